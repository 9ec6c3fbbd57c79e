//! A client and a server state machine wired together in memory (quinn's `Pair`): no
//! sockets, no sleeps; time is a value the test advances.

mod common;
use common::Pair;

use std::time::{Duration, Instant};

use bytes::Bytes;
use wirecall_protocol::{
    check_codec, Annotations, CallRequest, Cause, ClientConfig, ClientConnection, ClientEvent,
    CodecId, ErrorBody, ErrorCode, ErrorFrame, ExtensionTag, Extensions, Limits, Method,
    ProtocolError, ProviderId, Reply, RequestId, ServerConfig, ServerConnection, ServerEvent,
    StreamItem,
};

impl Pair {
    fn default_pair() -> Pair {
        Pair::new(
            ClientConfig::new(vec![CodecId::MSGPACK, CodecId::JSON]),
            ServerConfig::new(vec![CodecId::JSON, CodecId::MSGPACK]),
        )
    }

    fn connected() -> Pair {
        let mut p = Pair::default_pair();
        p.drive();
        assert!(matches!(
            p.client.poll_event(),
            Some(ClientEvent::Connected(_))
        ));
        assert!(matches!(
            p.server.poll_event(),
            Some(ServerEvent::Connected(_))
        ));
        p
    }

    fn call(&mut self, method: &str, args: &'static [u8]) -> RequestId {
        self.client
            .call(
                CallRequest::new(
                    ProviderId(1),
                    Method::new(method.to_string()).unwrap(),
                    Bytes::from_static(args),
                ),
                self.now,
            )
            .unwrap()
    }

    fn reply(&mut self, id: RequestId, result: &'static [u8]) -> Result<(), ProtocolError> {
        self.server.reply(Reply {
            request_id: id,
            codec: CodecId::MSGPACK,
            stream: false,
            annotations: Annotations::new(),
            result: Bytes::from_static(result),
            attachment: Bytes::new(),
        })
    }
}

fn calls(events: Vec<ServerEvent>) -> Vec<wirecall_protocol::Call> {
    events
        .into_iter()
        .map(|e| match e {
            ServerEvent::Call(c) => c,
            other => panic!("expected a call, got {other:?}"),
        })
        .collect()
}

#[test]
fn handshake_agrees_on_the_clients_first_accepted_codec() {
    let mut p = Pair::default_pair();
    p.drive();
    let Some(ClientEvent::Connected(cs)) = p.client.poll_event() else {
        panic!()
    };
    let Some(ServerEvent::Connected(ss)) = p.server.poll_event() else {
        panic!()
    };
    assert_eq!(cs.codec, CodecId::MSGPACK);
    assert_eq!(cs.version, 1);
    assert_eq!(cs.accepted, vec![CodecId::JSON, CodecId::MSGPACK]);
    assert_eq!(cs.peer_limits, Limits::default());
    assert_eq!(ss.codec, CodecId::MSGPACK);
    assert_eq!(ss.offered, vec![CodecId::MSGPACK, CodecId::JSON]);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn handshake_answers_only_the_extensions_both_sides_know() {
    let mut client = ClientConfig::new(vec![CodecId::JSON]);
    client.extensions = Extensions::new()
        .with(ExtensionTag(200), &b"unknown to the server"[..])
        .unwrap()
        .with(ExtensionTag::COMPRESSION, &[1u8][..])
        .unwrap();
    let mut server = ServerConfig::new(vec![CodecId::JSON]);
    server.extensions = Extensions::new()
        .with(ExtensionTag::COMPRESSION, &[1u8][..])
        .unwrap()
        .with(ExtensionTag::CALLBACKS, &[][..])
        .unwrap();
    let mut p = Pair::new(client, server);
    p.drive();
    let Some(ClientEvent::Connected(cs)) = p.client.poll_event() else {
        panic!("{:?}", p.client_err)
    };
    let Some(ServerEvent::Connected(ss)) = p.server.poll_event() else {
        panic!()
    };
    // The unknown tag and the one the client did not offer are left out.
    let tags: Vec<_> = cs.extensions.iter().map(|(t, _)| t).collect();
    assert_eq!(tags, vec![ExtensionTag::COMPRESSION]);
    assert_eq!(ss.extensions, cs.extensions);
    assert_eq!(ss.offered_extensions.iter().count(), 2);
    assert_eq!(
        ss.offered_extensions.get(ExtensionTag(200)).unwrap(),
        &b"unknown to the server"[..]
    );
}

#[test]
fn client_rejects_a_welcome_answering_an_extension_it_did_not_offer() {
    use wirecall_protocol::{Frame, Welcome};
    let mut c =
        ClientConnection::new(ClientConfig::new(vec![CodecId::JSON]), Instant::now()).unwrap();
    while c.poll_transmit().is_some() {}
    let mut b = bytes::BytesMut::new();
    Frame::Welcome(Welcome {
        version: 1,
        codec: CodecId::JSON,
        accepted: vec![CodecId::JSON],
        limits: Limits::default(),
        extensions: Extensions::new()
            .with(ExtensionTag::CALLBACKS, &[][..])
            .unwrap(),
    })
    .encode(&mut b)
    .unwrap();
    let e = c.handle_input(&b, Instant::now()).unwrap_err();
    assert!(
        e.to_string().contains("extension that was not offered"),
        "{e}"
    );
    assert!(c.poll_event().is_none(), "no Connected event");
}

#[test]
fn handshake_refused_names_the_accepted_set() {
    let mut p = Pair::new(
        ClientConfig::new(vec![CodecId::CBOR]),
        ServerConfig::new(vec![CodecId::JSON, CodecId::MSGPACK]),
    );
    p.drive();
    match p.client_err.take().unwrap() {
        ProtocolError::Refused {
            code,
            accepted,
            versions,
            ..
        } => {
            assert_eq!(code, ErrorCode::NO_COMMON_CODEC);
            assert_eq!(accepted, vec![CodecId::JSON, CodecId::MSGPACK]);
            assert_eq!(versions, vec![1]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.server_err.take().unwrap().kind_name(), "no_common_codec");
    assert!(p.client.is_closed() && p.server.is_closed());
    assert_eq!(
        p.client
            .call(
                CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new()),
                p.now
            )
            .unwrap_err(),
        ProtocolError::Closed
    );
}

#[test]
fn call_before_handshake_is_a_local_error() {
    let mut p = Pair::default_pair();
    let e = p
        .client
        .call(
            CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new()),
            p.now,
        )
        .unwrap_err();
    assert_eq!(e.cause(), Cause::Local);
    assert_eq!(e.kind_name(), "invalid_state");
}

#[test]
fn refused_codec_per_frame_lists_the_accepted_set_and_the_connection_survives() {
    let mut p = Pair::connected();
    let mut req = CallRequest::new(
        ProviderId(1),
        Method::new("m").unwrap(),
        Bytes::from_static(b"\x80"),
    );
    req.codec = Some(CodecId::CBOR);
    let id = p.client.call(req, p.now).unwrap();
    p.drive();
    let events = p.server_events();
    assert!(
        matches!(&events[..], [ServerEvent::Rejected { request_id, error: ProtocolError::CodecRefused { codec: CodecId::CBOR, .. } }] if *request_id == id)
    );
    let [ClientEvent::Error(e)] = &p.client_events()[..] else {
        panic!()
    };
    assert_eq!(e.request_id, id);
    assert_eq!(e.body.code, ErrorCode::CODEC_REFUSED);
    assert_eq!(e.body.accepted, vec![CodecId::JSON, CodecId::MSGPACK]);
    // The helper the engine uses to phrase it.
    let err = check_codec(CodecId::CBOR, &e.body.accepted).unwrap_err();
    assert_eq!(
        err.to_string(),
        "codec cbor refused; this side accepts json, msgpack"
    );
    assert!(check_codec(CodecId::JSON, &e.body.accepted).is_ok());
    // Still usable.
    let id2 = p.call("m", b"\x90");
    p.drive();
    let c = calls(p.server_events());
    assert_eq!(c[0].request_id, id2);
    assert_eq!(c[0].codec, CodecId::MSGPACK);
}

#[test]
fn interleaved_calls_answered_out_of_order() {
    let mut p = Pair::connected();
    let ids: Vec<RequestId> = (0..3).map(|i| p.call(&format!("m{i}"), b"\x90")).collect();
    assert_eq!(ids, vec![RequestId(1), RequestId(2), RequestId(3)]);
    assert_eq!(p.client.in_flight(), 3);
    p.drive();
    let c = calls(p.server_events());
    assert_eq!(
        c.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    assert_eq!(p.server.in_flight(), 3);
    p.reply(ids[2], b"\x03").unwrap();
    p.reply(ids[0], b"\x01").unwrap();
    p.drive();
    p.reply(ids[1], b"\x02").unwrap();
    p.drive();
    let got: Vec<(RequestId, Bytes)> = p
        .client_events()
        .into_iter()
        .map(|e| match e {
            ClientEvent::Reply(r) => (r.request_id, r.result),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[2], Bytes::from_static(b"\x03")),
            (ids[0], Bytes::from_static(b"\x01")),
            (ids[1], Bytes::from_static(b"\x02"))
        ]
    );
    assert_eq!(p.client.in_flight(), 0);
    assert_eq!(p.server.in_flight(), 0);
    // Answering twice is a local error the engine can ignore.
    assert_eq!(
        p.reply(ids[0], b"\x01").unwrap_err().kind_name(),
        "not_in_flight"
    );
}

#[test]
fn kwargs_annotations_and_attachment_travel() {
    let mut p = Pair::connected();
    let mut req = CallRequest::new(
        ProviderId(42),
        Method::new("svc_hello").unwrap(),
        Bytes::from_static(b"\x91\xa1a"),
    );
    req.kwargs = Bytes::from_static(b"\x81\xa1k\x01");
    req.attachment = Bytes::from(vec![0xab; 100_000]);
    req.annotations = Annotations::builder()
        .correlation_id([1; 16])
        .insert("user", b"u")
        .unwrap()
        .build();
    p.client.call(req, p.now).unwrap();
    p.drive();
    let c = calls(p.server_events()).remove(0);
    assert_eq!(c.provider, ProviderId(42));
    assert_eq!(&c.kwargs[..], b"\x81\xa1k\x01");
    assert_eq!(c.attachment.len(), 100_000);
    assert_eq!(c.annotations.correlation_id(), Some([1; 16]));
    assert_eq!(c.annotations.get("user"), Some(&b"u"[..]));
}

#[test]
fn streamed_result() {
    let mut p = Pair::connected();
    let id = p.call("gen", b"\x90");
    p.drive();
    p.server_events();
    // An item before the streamed REPLY is a local error.
    let item = |n: u8| StreamItem {
        request_id: id,
        codec: CodecId::MSGPACK,
        annotations: Annotations::new(),
        item: Bytes::from(vec![n]),
        attachment: Bytes::new(),
    };
    assert_eq!(
        p.server
            .stream_item(item(0), p.now)
            .unwrap_err()
            .kind_name(),
        "invalid_state"
    );
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::MSGPACK,
            stream: true,
            annotations: Annotations::new(),
            result: Bytes::new(),
            attachment: Bytes::new(),
        })
        .unwrap();
    p.server.stream_item(item(1), p.now).unwrap();
    p.server.stream_item(item(2), p.now).unwrap();
    p.server.stream_end(id).unwrap();
    p.drive();
    let ev = p.client_events();
    assert!(matches!(&ev[0], ClientEvent::Reply(r) if r.stream));
    assert!(matches!(&ev[1], ClientEvent::StreamItem(s) if s.item[..] == [1]));
    assert!(matches!(&ev[2], ClientEvent::StreamItem(s) if s.item[..] == [2]));
    assert_eq!(ev[3], ClientEvent::StreamEnd(id));
    assert_eq!(p.client.in_flight(), 0);
    assert!(p.client_err.is_none());
}

#[test]
fn cancel_gets_cancelled_and_is_swallowed() {
    let mut p = Pair::connected();
    let id = p.call("slow", b"\x90");
    p.drive();
    p.server_events();
    assert!(p.client.cancel(id).unwrap());
    assert!(!p.client.cancel(id).unwrap(), "second cancel is a no-op");
    p.drive();
    assert_eq!(p.server_events(), vec![ServerEvent::Cancelled(id)]);
    assert_eq!(
        p.reply(id, b"\x01").unwrap_err().kind_name(),
        "not_in_flight"
    );
    // The client swallowed the server's CANCELLED answer.
    assert_eq!(p.client_events(), vec![]);
    assert_eq!(p.client.in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn cancel_crossing_the_reply() {
    let mut p = Pair::connected();
    let id = p.call("fast", b"\x90");
    p.drive();
    p.server_events();
    p.reply(id, b"\x01").unwrap(); // queued, not yet delivered
    p.client.cancel(id).unwrap();
    p.drive();
    assert_eq!(
        p.server_events(),
        vec![],
        "a CANCEL after the answer is ignored"
    );
    assert_eq!(
        p.client_events(),
        vec![],
        "the reply to a cancelled call is swallowed"
    );
    assert_eq!(p.client.in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn deadline_fails_the_call_on_both_sides() {
    let mut p = Pair::connected();
    let mut req = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
    req.annotations = Annotations::builder()
        .deadline(Duration::from_millis(100))
        .build();
    let id = p.client.call(req, p.now).unwrap();
    let other = p.call("n", b"");
    p.drive();
    assert_eq!(p.server_events().len(), 2);
    assert_eq!(
        p.client.poll_timeout(),
        Some(p.now + Duration::from_millis(100))
    );
    p.advance(Duration::from_millis(99));
    p.drive();
    assert_eq!(p.client_events(), vec![]);
    p.advance(Duration::from_millis(1));
    assert_eq!(
        p.client_events(),
        vec![ClientEvent::Failed {
            request_id: id,
            error: ProtocolError::DeadlineExceeded { request_id: id }
        }]
    );
    assert_eq!(p.server_events(), vec![ServerEvent::Expired(id)]);
    p.drive();
    assert_eq!(p.server_events(), vec![]);
    assert_eq!(p.client_events(), vec![]);
    assert_eq!(p.client.in_flight(), 1);
    p.reply(other, b"").unwrap();
    p.drive();
    assert!(matches!(&p.client_events()[..], [ClientEvent::Reply(r)] if r.request_id == other));
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn a_result_ready_after_the_deadline_is_not_sent_in_place_of_deadline_exceeded() {
    // A driver whose handler held it past the deadline (its timer could not fire) expires
    // the calls before answering: the caller gets DEADLINE_EXCEEDED, never the late value.
    let mut p = Pair::connected();
    let mut req = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
    req.annotations = Annotations::builder()
        .deadline(Duration::from_millis(100))
        .build();
    let id = p.client.call(req, p.now).unwrap();
    let other = p.call("n", b"");
    p.drive();
    assert_eq!(p.server_events().len(), 2);
    // Not yet due: nothing expires, the calls stay answerable.
    assert_eq!(p.server.expire_calls(p.now + Duration::from_millis(99)), 0);
    assert_eq!(p.server.in_flight(), 2);
    let late = p.now + Duration::from_millis(250);
    assert_eq!(p.server.expire_calls(late), 1);
    assert_eq!(p.server_events(), vec![ServerEvent::Expired(id)]);
    assert_eq!(
        p.reply(id, b"late"),
        Err(ProtocolError::NotInFlight { request_id: id })
    );
    // The call without a deadline is untouched.
    p.reply(other, b"").unwrap();
    p.drive();
    let events = p.client_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], ClientEvent::Error(e) if e.request_id == id && e.body.code == ErrorCode::DEADLINE_EXCEEDED),
        "{events:?}"
    );
    assert!(matches!(&events[1], ClientEvent::Reply(r) if r.request_id == other));
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn server_goaway_finishes_in_flight_and_refuses_crossing_calls() {
    let mut p = Pair::connected();
    let a = p.call("a", b"");
    p.drive();
    p.server_events();
    p.server.goaway("restart").unwrap();
    let crossing = p.call("b", b""); // sent before the client sees GOAWAY
    p.drive();
    let ev = p.client_events();
    assert!(matches!(&ev[0], ClientEvent::GoAway(g) if g.last_request_id == a));
    assert!(
        matches!(&ev[1], ClientEvent::Error(e) if e.request_id == crossing && e.body.code == ErrorCode::SHUTTING_DOWN)
    );
    assert!(matches!(
        &p.server_events()[..],
        [ServerEvent::Rejected {
            error: ProtocolError::GoingAway,
            ..
        }]
    ));
    let e = p
        .client
        .call(
            CallRequest::new(ProviderId(1), Method::new("c").unwrap(), Bytes::new()),
            p.now,
        )
        .unwrap_err();
    assert_eq!(e, ProtocolError::GoingAway);
    assert!(e.is_retryable());
    p.reply(a, b"\x01").unwrap();
    assert_eq!(p.server_events(), vec![ServerEvent::Drained]);
    p.drive();
    let ev = p.client_events();
    assert!(matches!(&ev[0], ClientEvent::Reply(r) if r.request_id == a));
    assert_eq!(ev[1], ClientEvent::Drained);
    assert!(p.client.handle_eof().is_ok());
}

/// Request ids keep increasing after the server's GOAWAY: a CALL refused then still
/// counts, so the same id again is fatal rather than refused a second time (the fuzzer
/// found a duplicated CALL answered twice).
#[test]
fn a_repeated_call_id_after_goaway_is_fatal() {
    let mut p = Pair::connected();
    let a = p.call("a", b"");
    p.drive();
    p.server_events();
    p.server.goaway("restart").unwrap();
    let crossing = p.call("b", b"");
    // The client's bytes of the crossing CALL, delivered twice.
    let bytes = p.client.poll_transmit().unwrap();
    p.server.handle_input(&bytes, p.now).unwrap();
    assert!(matches!(
        &p.server_events()[..],
        [ServerEvent::Rejected { request_id, .. }] if *request_id == crossing
    ));
    let err = p.server.handle_input(&bytes, p.now).unwrap_err();
    assert!(
        matches!(err, ProtocolError::RequestIdNotIncreasing { .. }),
        "{err:?}"
    );
    assert!(p.server.is_closed());
    // A CANCEL for the refused call is no unknown request.
    let mut q = Pair::connected();
    q.call("a", b"");
    q.drive();
    q.server_events();
    q.server.goaway("restart").unwrap();
    let refused = q.call("b", b"");
    q.drive();
    let _ = a;
    let mut cancel = bytes::BytesMut::new();
    wirecall_protocol::Frame::Cancel(refused)
        .encode(&mut cancel)
        .unwrap();
    assert!(q.server.handle_input(&cancel, q.now).is_ok());
}

#[test]
fn client_goaway_drains() {
    let mut p = Pair::connected();
    let a = p.call("a", b"");
    p.client.goaway().unwrap();
    assert_eq!(
        p.client
            .call(
                CallRequest::new(ProviderId(1), Method::new("c").unwrap(), Bytes::new()),
                p.now
            )
            .unwrap_err(),
        ProtocolError::GoingAway
    );
    p.drive();
    let ev = p.server_events();
    assert!(matches!(
        &ev[..],
        [ServerEvent::Call(_), ServerEvent::GoAway(_)]
    ));
    p.reply(a, b"").unwrap();
    assert_eq!(p.server_events(), vec![ServerEvent::Drained]);
    p.drive();
    let ev = p.client_events();
    assert!(matches!(
        &ev[..],
        [ClientEvent::Reply(_), ClientEvent::Drained]
    ));
}

#[test]
fn ping_pong_measures_the_round_trip() {
    let mut p = Pair::connected();
    p.client.ping(p.now).unwrap();
    p.server.ping(p.now).unwrap();
    // Both PINGs sit in the send buffers while 7 ms pass.
    p.now += Duration::from_millis(7);
    p.drive();
    assert_eq!(
        p.client_events(),
        vec![ClientEvent::Pong {
            rtt: Duration::from_millis(7)
        }]
    );
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Pong {
            rtt: Duration::from_millis(7)
        }]
    );
}

#[test]
fn ping_timeout_is_fatal_and_the_peer_is_told() {
    let mut cfg = ClientConfig::new(vec![CodecId::JSON]);
    cfg.ping_timeout = Some(Duration::from_secs(2));
    let mut p = Pair::new(cfg, ServerConfig::new(vec![CodecId::JSON]));
    p.drive();
    p.client_events();
    p.server_events();
    p.client.ping(p.now).unwrap();
    let _lost = p.client.poll_transmit(); // the PING is lost
    p.advance(Duration::from_secs(2));
    let e = p.client_err.take().unwrap();
    assert_eq!(e, ProtocolError::PingTimeout);
    assert_eq!(e.cause(), Cause::Timeout);
    assert!(e.is_retryable());
    p.drive();
    assert!(matches!(
        p.server_err.take(),
        Some(ProtocolError::PeerClosed {
            code: ErrorCode::TIMEOUT,
            ..
        })
    ));
}

#[test]
fn handshake_timeout() {
    let mut cfg = ServerConfig::new(vec![CodecId::JSON]);
    cfg.handshake_timeout = Some(Duration::from_secs(1));
    let mut p = Pair::new(ClientConfig::new(vec![CodecId::JSON]), cfg);
    let _hello_lost = p.client.poll_transmit();
    assert_eq!(
        p.server.poll_timeout(),
        Some(p.now + Duration::from_secs(1))
    );
    p.advance(Duration::from_secs(1));
    assert_eq!(p.server_err.take(), Some(ProtocolError::HandshakeTimeout));
}

#[test]
fn in_flight_limit_is_enforced_locally_and_by_the_server() {
    let mut sc = ServerConfig::new(vec![CodecId::JSON]);
    sc.limits.max_in_flight = 2;
    let mut p = Pair::new(ClientConfig::new(vec![CodecId::JSON]), sc);
    p.drive();
    p.client_events();
    p.server_events();
    p.call("a", b"");
    p.call("b", b"");
    let e = p
        .client
        .call(
            CallRequest::new(ProviderId(1), Method::new("c").unwrap(), Bytes::new()),
            p.now,
        )
        .unwrap_err();
    assert_eq!(e, ProtocolError::InFlightLimit { max: 2 });
    assert_eq!(e.cause(), Cause::Local);
    assert!(e.is_retryable());
    // Oneway calls do not count.
    let mut ow = CallRequest::new(ProviderId(1), Method::new("notify").unwrap(), Bytes::new());
    ow.oneway = true;
    p.client.call(ow, p.now).unwrap();
    p.drive();
    let ev = p.server_events();
    assert_eq!(ev.len(), 3);
    assert!(matches!(&ev[2], ServerEvent::Call(c) if c.oneway));
    assert_eq!(p.server.in_flight(), 2);
    assert_eq!(
        p.reply(RequestId(3), b"").unwrap_err().kind_name(),
        "not_in_flight"
    );
}

#[test]
fn frames_over_the_peers_limit_are_not_sent() {
    let mut sc = ServerConfig::new(vec![CodecId::JSON]);
    sc.limits.max_frame_len = 4096;
    sc.limits.max_annotations_len = 8;
    let mut p = Pair::new(ClientConfig::new(vec![CodecId::JSON]), sc);
    p.drive();
    let big = CallRequest::new(
        ProviderId(1),
        Method::new("m").unwrap(),
        Bytes::from(vec![0; 5000]),
    );
    let e = p.client.call(big, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "too_long");
    assert_eq!(e.cause(), Cause::Local);
    let mut ann = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
    ann.annotations = Annotations::builder()
        .insert("key", b"value")
        .unwrap()
        .build();
    assert_eq!(
        p.client.call(ann, p.now).unwrap_err().kind_name(),
        "too_long"
    );
    assert_eq!(p.client.poll_transmit(), None, "nothing was queued");
    assert_eq!(p.client.in_flight(), 0);
}

#[test]
fn application_error_carries_type_message_and_trace() {
    let mut p = Pair::connected();
    let id = p.call("fail", b"");
    p.drive();
    p.server_events();
    p.server
        .error(ErrorFrame {
            request_id: id,
            codec: CodecId::MSGPACK,
            annotations: Annotations::new(),
            body: ErrorBody {
                code: ErrorCode::APPLICATION_ERROR,
                type_name: "builtins.ValueError".into(),
                message: "bad".into(),
                trace: "a\nb".into(),
                accepted: vec![],
                names: vec![],
                detail: Bytes::from_static(b"\x91\x01"),
            },
        })
        .unwrap();
    p.drive();
    let [ClientEvent::Error(e)] = &p.client_events()[..] else {
        panic!()
    };
    assert_eq!(e.body.type_name, "builtins.ValueError");
    assert_eq!(e.body.trace.lines().count(), 2);
    assert_eq!(&e.body.detail[..], b"\x91\x01");
}

#[test]
fn protocol_error_closes_both_sides_with_a_reason() {
    let mut p = Pair::connected();
    // A server never sends CALL; inject one as if it had.
    let mut raw = bytes::BytesMut::new();
    wirecall_protocol::Frame::Call(wirecall_protocol::Call {
        request_id: RequestId(1),
        provider: ProviderId(0),
        codec: CodecId::JSON,
        oneway: false,
        upload: false,
        method: Method::new("x").unwrap(),
        annotations: Annotations::new(),
        args: Bytes::new(),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
    .encode(&mut raw)
    .unwrap();
    let e = p.client.handle_input(&raw, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "unexpected_frame");
    assert!(p.client.is_closed());
    assert_eq!(
        p.client.handle_input(&[], p.now).unwrap_err(),
        ProtocolError::Closed
    );
    p.drive();
    match p.server_err.take() {
        Some(ProtocolError::PeerClosed { code, message }) => {
            assert_eq!(code, ErrorCode::PROTOCOL_ERROR);
            assert!(message.contains("unexpected CALL"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn large_sections_are_sent_without_copying() {
    let mut p = Pair::connected();
    let args = Bytes::from(vec![1u8; 8192]);
    let attachment = Bytes::from(vec![2u8; 1 << 20]);
    let mut req = CallRequest::new(ProviderId(1), Method::new("put").unwrap(), args.clone());
    req.attachment = attachment.clone();
    req.kwargs = Bytes::from_static(b"\x80"); // small: copied
    p.client.call(req, p.now).unwrap();
    let chunks: Vec<Bytes> = std::iter::from_fn(|| p.client.poll_transmit()).collect();
    assert_eq!(chunks.len(), 4, "head, args, kwargs, attachment");
    assert_eq!(chunks[1].as_ptr(), args.as_ptr());
    assert_eq!(chunks[3].as_ptr(), attachment.as_ptr());
    for c in &chunks {
        p.server.handle_input(c, p.now).unwrap();
    }
    let c = calls(p.server_events()).remove(0);
    assert_eq!(
        (c.args, c.kwargs, c.attachment),
        (args, Bytes::from_static(b"\x80"), attachment)
    );
}

#[test]
fn end_of_stream_on_the_server() {
    let mut p = Pair::connected();
    assert!(
        p.server.handle_eof().is_ok(),
        "nothing in flight: a clean close"
    );
    let mut p = Pair::connected();
    p.call("a", b"");
    p.drive();
    let e = p.server.handle_eof().unwrap_err();
    assert_eq!(e.kind_name(), "peer_closed");
    let mut p = Pair::connected();
    p.server
        .handle_input(&wirecall_protocol::MAGIC[..2], p.now)
        .unwrap();
    assert_eq!(p.server.handle_eof().unwrap_err().kind_name(), "truncated");
}

// ---- timers that evict slow and idle peers (issue: one connection layer) ----

/// The GOAWAY a side queued, decoded from its transmit bytes.
fn goaway_sent(bytes: &[u8]) -> Option<wirecall_protocol::GoAway> {
    let mut buf = bytes::BytesMut::from(bytes);
    let mut d = wirecall_protocol::FrameDecoder::default();
    while let Ok(Some(f)) = d.decode(&mut buf) {
        if let wirecall_protocol::Frame::GoAway(g) = f {
            return Some(g);
        }
    }
    None
}

fn server_transmit(s: &mut ServerConnection) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    s.take_transmit(&mut out);
    out.to_vec()
}

#[test]
fn handshake_deadline_is_not_restarted_by_each_byte() {
    let now = Instant::now();
    let mut s = ServerConnection::new(ServerConfig::new(vec![CodecId::JSON]), now).unwrap();
    // A HELLO trickled one byte per second never completes the handshake in time.
    let mut c = ClientConnection::new(ClientConfig::new(vec![CodecId::JSON]), now).unwrap();
    let hello: Vec<u8> = std::iter::from_fn(|| c.poll_transmit())
        .flat_map(|b| b.to_vec())
        .collect();
    let mut t = now;
    let mut failed = None;
    for b in &hello {
        t += Duration::from_secs(1);
        if let Err(e) = s.handle_timeout(t) {
            failed = Some((e, t));
            break;
        }
        s.handle_input(std::slice::from_ref(b), t).unwrap();
        assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    }
    let (e, at) = failed.expect("the handshake deadline fired");
    assert_eq!(e, ProtocolError::HandshakeTimeout);
    assert_eq!(at, now + Duration::from_secs(10));
    assert_eq!(e.code(), ErrorCode::TIMEOUT);
    let g = goaway_sent(&server_transmit(&mut s)).expect("GOAWAY TIMEOUT sent");
    assert_eq!(g.code, ErrorCode::TIMEOUT);
}

#[test]
fn a_frame_trickled_after_the_handshake_hits_the_frame_deadline() {
    let mut p = Pair::connected();
    let _ = server_transmit(&mut p.server);
    // The first 10 bytes of a CALL, then one byte a second.
    p.call("slow", b"\x90");
    let call: Vec<u8> = std::iter::from_fn(|| p.client.poll_transmit())
        .flat_map(|b| b.to_vec())
        .collect();
    let start = p.now;
    p.server.handle_input(&call[..10], p.now).unwrap();
    assert_eq!(
        p.server.poll_timeout(),
        Some(start + Duration::from_secs(30)),
        "the frame deadline is armed from the frame's first bytes"
    );
    let mut i = 10;
    loop {
        p.now += Duration::from_secs(1);
        if let Err(e) = p.server.handle_timeout(p.now) {
            assert_eq!(e, ProtocolError::FrameTimeout);
            assert_eq!(e.cause(), Cause::Timeout);
            break;
        }
        p.server.handle_input(&call[i..i + 1], p.now).unwrap();
        i += 1;
        assert!(
            i < call.len(),
            "the frame must not complete before its deadline"
        );
    }
    assert_eq!(p.now, start + Duration::from_secs(30));
    assert!(p.server.is_closed());
    let g = goaway_sent(&server_transmit(&mut p.server)).unwrap();
    assert_eq!(g.code, ErrorCode::TIMEOUT);
}

#[test]
fn a_complete_frame_clears_the_frame_deadline() {
    let mut p = Pair::connected();
    p.call("quick", b"\x90");
    let call: Vec<u8> = std::iter::from_fn(|| p.client.poll_transmit())
        .flat_map(|b| b.to_vec())
        .collect();
    p.server.handle_input(&call[..5], p.now).unwrap();
    p.now += Duration::from_secs(29);
    p.server.handle_input(&call[5..], p.now).unwrap();
    p.now += Duration::from_secs(5);
    p.server.handle_timeout(p.now).unwrap();
    assert!(!p.server.is_closed());
}

#[test]
fn an_idle_connection_is_closed_with_goaway_timeout() {
    let mut p = Pair::connected();
    let t0 = p.now;
    assert_eq!(p.server.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    p.advance(Duration::from_secs(59));
    assert!(p.server_err.is_none());
    p.advance(Duration::from_secs(1));
    assert_eq!(p.server_err.take(), Some(ProtocolError::IdleTimeout));
    p.drive();
    match p.client_err.take() {
        Some(ProtocolError::PeerClosed { code, .. }) => assert_eq!(code, ErrorCode::TIMEOUT),
        other => panic!("{other:?}"),
    }
    assert!(ProtocolError::IdleTimeout.is_retryable());
}

#[test]
fn a_call_in_flight_or_a_frame_keeps_the_connection_from_idling() {
    let mut p = Pair::connected();
    let id = p.call("long", b"\x90");
    p.drive();
    let _ = p.server_events();
    // Busy for two idle periods: never closed.
    p.advance(Duration::from_secs(60));
    p.advance(Duration::from_secs(60));
    assert!(p.server_err.is_none(), "{:?}", p.server_err);
    p.reply(id, b"\xc0").unwrap();
    p.drive();
    // The idle period restarts no earlier than the reply.
    p.advance(Duration::from_secs(59));
    assert!(p.server_err.is_none());
    // A frame (another call) restarts it too.
    let id = p.call("again", b"\x90");
    p.drive();
    let _ = p.server_events();
    p.reply(id, b"\xc0").unwrap();
    p.drive();
    p.advance(Duration::from_secs(59));
    assert!(p.server_err.is_none());
    p.advance(Duration::from_secs(61));
    assert_eq!(p.server_err.take(), Some(ProtocolError::IdleTimeout));
}

#[test]
fn pings_do_not_keep_a_connection_from_idling() {
    let mut p = Pair::connected();
    for _ in 0..5 {
        p.advance(Duration::from_secs(20));
        if p.server_err.is_some() {
            break;
        }
        p.client.ping(p.now).unwrap();
        p.drive();
    }
    assert_eq!(p.server_err.take(), Some(ProtocolError::IdleTimeout));
}

#[test]
fn keepalive_pings_a_quiet_peer_and_a_dead_one_times_out() {
    let mut server = ServerConfig::new(vec![CodecId::JSON]);
    server.keepalive = Some(Duration::from_secs(10));
    server.idle_timeout = None;
    let mut p = Pair::new(ClientConfig::new(vec![CodecId::JSON]), server);
    p.drive();
    let _ = (p.client_events(), p.server_events());
    // A call in flight and nothing else on the wire: after 10 s the server pings.
    let _id = p.call("long", b"[]");
    p.drive();
    let _ = p.server_events();
    assert_eq!(
        p.server.poll_timeout(),
        Some(p.now + Duration::from_secs(10))
    );
    p.advance(Duration::from_secs(10));
    assert!(p.server.has_transmit(), "a PING is queued");
    // A live client answers; the round trip is reported and the keep-alive re-arms.
    p.drive();
    assert!(matches!(
        p.server_events().as_slice(),
        [ServerEvent::Pong { .. }]
    ));
    assert_eq!(
        p.server.poll_timeout(),
        Some(p.now + Duration::from_secs(10))
    );
    // A dead client: the next PING goes unanswered and the ping timeout (30 s) closes.
    p.advance(Duration::from_secs(10));
    let _ping = p.server.poll_transmit();
    p.advance(Duration::from_secs(30));
    assert_eq!(p.server_err.take(), Some(ProtocolError::PingTimeout));
}

#[test]
fn input_is_decoded_in_the_drivers_buffer() {
    let mut p = Pair::connected();
    let args = Bytes::from(vec![7u8; 100]);
    p.client
        .call(
            CallRequest::new(ProviderId(1), Method::new("m").unwrap(), args.clone()),
            p.now,
        )
        .unwrap();
    let mut buf = bytes::BytesMut::new();
    p.client.take_transmit(&mut buf);
    let total = buf.len();
    // Half a frame stays in the driver's buffer; the rest completes it.
    let mut rest = buf.split_off(total / 2);
    p.server.handle_input_buf(&mut buf, p.now).unwrap();
    assert_eq!(buf.len(), total / 2, "an unfinished frame is left in place");
    buf.unsplit(rest.split());
    let base = buf.as_ptr() as usize;
    p.server.handle_input_buf(&mut buf, p.now).unwrap();
    assert!(buf.is_empty());
    let c = calls(p.server_events()).remove(0);
    assert_eq!(c.args, args);
    let at = c.args.as_ptr() as usize;
    assert!(
        at >= base && at < base + total,
        "the payload is a slice of the driver's buffer, not a copy"
    );
}

#[test]
fn plain_replies_are_read_in_place_and_checked() {
    let mut p = Pair::connected();
    let a = p.call("a", b"");
    let b = p.call("b", b"");
    p.drive();
    let _ = p.server_events();
    p.reply(b, b"\x01").unwrap();
    p.reply(a, b"\x02").unwrap();
    let mut buf = bytes::BytesMut::new();
    p.server.take_transmit(&mut buf);
    let mut seen = Vec::new();
    p.client
        .handle_input_with(&mut buf, p.now, 64, usize::MAX, |id, codec, r| {
            seen.push((id, codec, r.to_vec()))
        })
        .unwrap();
    assert_eq!(
        seen,
        vec![
            (b, CodecId::MSGPACK, vec![1]),
            (a, CodecId::MSGPACK, vec![2])
        ]
    );
    assert_eq!(p.client.in_flight(), 0);
    assert!(
        p.client_events().is_empty(),
        "no Reply events for in-place replies"
    );

    // A reply for a call not in flight is still a protocol error.
    let mut q = Pair::connected();
    let id = q.call("x", b"");
    q.drive();
    q.reply(id, b"\x01").unwrap();
    let mut once = bytes::BytesMut::new();
    q.server.take_transmit(&mut once);
    let again = once.clone();
    q.client
        .handle_input_with(&mut once, q.now, 64, usize::MAX, |_, _, _| {})
        .unwrap();
    let mut again = again;
    let e = q
        .client
        .handle_input_with(&mut again, q.now, 64, usize::MAX, |_, _, _| {
            panic!("a reply for a call not in flight reached the caller")
        })
        .unwrap_err();
    assert_eq!(e.kind_name(), "unknown_request");

    // A cancelled call's reply is swallowed, not handed out.
    let mut r = Pair::connected();
    let id = r.call("y", b"");
    r.drive();
    let _ = r.server_events();
    r.client.cancel(id).unwrap();
    r.reply(id, b"\x01").unwrap();
    let mut buf = bytes::BytesMut::new();
    r.server.take_transmit(&mut buf);
    r.client
        .handle_input_with(&mut buf, r.now, 64, usize::MAX, |_, _, _| {
            panic!("cancelled")
        })
        .unwrap();
    assert_eq!(r.client.in_flight(), 0);
}

#[test]
fn a_borrowed_call_over_the_servers_limit_fails_locally() {
    let mut server = ServerConfig::new(vec![CodecId::JSON]);
    server.limits = Limits {
        max_frame_len: 4096,
        ..Limits::default()
    };
    let mut p = Pair::new(ClientConfig::new(vec![CodecId::JSON]), server);
    p.drive();
    let _ = (p.client_events(), p.server_events());
    let big = vec![0u8; 5000];
    let ann = Annotations::new();
    let call = wirecall_protocol::CallRef {
        request_id: RequestId::NONE,
        provider: ProviderId(1),
        codec: CodecId::NONE,
        oneway: false,
        method: "put",
        annotations: &ann,
        args: &big,
        kwargs: &[],
        attachment: &[],
    };
    let e = p.client.call_ref(call, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "too_long");
    assert_eq!(e.cause(), Cause::Local);
    assert!(
        !p.client.is_closed(),
        "one oversized call does not end the connection"
    );
    assert!(!p.client.has_transmit(), "nothing was queued");
    let small = wirecall_protocol::CallRef {
        args: b"[]",
        ..call
    };
    let id = p.client.call_ref(small, p.now).unwrap();
    assert_eq!(id, RequestId(1), "the refused call took no request id");
    p.drive();
    assert_eq!(calls(p.server_events()).len(), 1);
}

#[test]
fn shutdown_drains_for_a_grace_then_gives_up_the_calls_left() {
    let mut p = Pair::connected();
    let quick = p.call("quick", b"");
    let slow = p.call("slow", b"");
    p.drive();
    let _ = p.server_events();
    p.server
        .shutdown("maintenance", p.now, Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        p.server.poll_timeout(),
        Some(p.now + Duration::from_secs(5))
    );
    // A call that finishes within the grace is answered as usual.
    p.reply(quick, b"\x01").unwrap();
    p.drive();
    p.advance(Duration::from_secs(4));
    assert!(p.server_events().is_empty());
    // At the end of the grace the call left is answered SHUTTING_DOWN and reported expired;
    // the connection is drained.
    p.advance(Duration::from_secs(1));
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Expired(slow), ServerEvent::Drained]
    );
    assert!(p.server_err.is_none());
    p.drive();
    let events = p.client_events();
    assert!(
        events.iter().any(|e| matches!(e, ClientEvent::Error(e)
            if e.request_id == slow && e.body.code == ErrorCode::SHUTTING_DOWN)),
        "{events:?}"
    );
    assert!(events.contains(&ClientEvent::Drained), "{events:?}");
    // Its answer, had it come later, is refused locally: the call is no longer in flight.
    assert_eq!(
        p.reply(slow, b"\x02").unwrap_err().kind_name(),
        "not_in_flight"
    );
}

#[test]
fn shutdown_before_the_handshake_closes_at_once() {
    let now = Instant::now();
    let mut s = ServerConnection::new(ServerConfig::new(vec![CodecId::JSON]), now).unwrap();
    s.shutdown("bye", now, Duration::from_secs(5)).unwrap();
    assert!(s.is_closed());
    let g = goaway_sent(&server_transmit(&mut s)).unwrap();
    assert_eq!(g.code, ErrorCode::SHUTTING_DOWN);
}

/// `reply_slice` sends exactly the bytes `reply` sends for the same plain result, and keeps
/// its rules: the call must be in flight, and an answered call is no longer.
#[test]
fn reply_slice_is_reply_without_the_frame() {
    for result in [&b""[..], b"\x01", &[7u8; 300][..], &[9u8; 70_000][..]] {
        let mut a = Pair::connected();
        let mut b = Pair::connected();
        let ia = a.call("m", b"\x90");
        let ib = b.call("m", b"\x90");
        a.drive();
        b.drive();
        assert_eq!(ia, ib);
        let _ = (a.server_events(), b.server_events());
        a.server
            .reply(Reply {
                request_id: ia,
                codec: CodecId::MSGPACK,
                stream: false,
                annotations: Annotations::new(),
                result: Bytes::copy_from_slice(result),
                attachment: Bytes::new(),
            })
            .unwrap();
        b.server.reply_slice(ib, CodecId::MSGPACK, result).unwrap();
        let bytes = |s: &mut ServerConnection| {
            std::iter::from_fn(|| s.poll_transmit())
                .flat_map(|b| b.to_vec())
                .collect::<Vec<u8>>()
        };
        let (wa, wb) = (bytes(&mut a.server), bytes(&mut b.server));
        assert_eq!(wa, wb, "same bytes for a {}-byte result", result.len());
        assert_eq!(b.server.in_flight(), 0);
        b.client.handle_input(&wb, b.now).unwrap();
        let got = b.client_events();
        assert!(
            matches!(&got[..], [ClientEvent::Reply(r)] if r.result == result),
            "{got:?}"
        );
        // Answered: a second answer is refused and sends nothing.
        assert_eq!(
            b.server
                .reply_slice(ib, CodecId::MSGPACK, b"\x01")
                .unwrap_err()
                .kind_name(),
            "not_in_flight"
        );
        assert_eq!(b.server.poll_transmit(), None);
    }
}

/// A codec a REPLY may not carry is refused as `reply` refuses it, and nothing is sent.
#[test]
fn reply_slice_refuses_what_reply_refuses() {
    let mut p = Pair::connected();
    let id = p.call("m", b"\x90");
    p.drive();
    let _ = p.server_events();
    for codec in [CodecId::NONE, CodecId(255)] {
        let a = p.server.reply_slice(id, codec, b"\x01").unwrap_err();
        let b = p
            .server
            .reply(Reply {
                request_id: id,
                codec,
                stream: false,
                annotations: Annotations::new(),
                result: Bytes::from_static(b"\x01"),
                attachment: Bytes::new(),
            })
            .unwrap_err();
        assert_eq!(a, b);
        assert_eq!(p.server.poll_transmit(), None);
        assert_eq!(p.server.in_flight(), 1);
    }
}

/// A result over the client's frame limit is refused before anything is queued, and the
/// call stays in flight so that the driver can fail it instead.
#[test]
fn reply_slice_over_the_peers_limit_is_not_sent() {
    let mut cc = ClientConfig::new(vec![CodecId::JSON]);
    cc.limits.max_frame_len = 4096;
    let mut p = Pair::new(cc, ServerConfig::new(vec![CodecId::JSON]));
    p.drive();
    let _ = (p.client_events(), p.server_events());
    let id = p.call("m", b"[]");
    p.drive();
    let _ = p.server_events();
    let e = p
        .server
        .reply_slice(id, CodecId::JSON, &[b'1'; 5000])
        .unwrap_err();
    assert_eq!(e.kind_name(), "too_long");
    assert_eq!(p.server.poll_transmit(), None, "nothing was queued");
    assert_eq!(p.server.in_flight(), 1);
    p.server
        .error(ErrorFrame {
            request_id: id,
            codec: CodecId::NONE,
            annotations: Annotations::new(),
            body: ErrorBody::new(ErrorCode::LIMIT_EXCEEDED, "too big"),
        })
        .unwrap();
    assert_eq!(p.server.in_flight(), 0);
}

/// A streaming call cannot be answered with a plain reply: refused, and it stays open.
#[test]
fn reply_slice_refuses_a_streaming_call() {
    let mut p = Pair::connected();
    let id = p.call("m", b"\x90");
    p.drive();
    let _ = p.server_events();
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::MSGPACK,
            stream: true,
            annotations: Annotations::new(),
            result: Bytes::new(),
            attachment: Bytes::new(),
        })
        .unwrap();
    let e = p
        .server
        .reply_slice(id, CodecId::MSGPACK, b"\x01")
        .unwrap_err();
    assert_eq!(e.kind_name(), "invalid_state");
    assert_eq!(p.server.in_flight(), 1);
    p.server.stream_end(id).unwrap();
    assert_eq!(p.server.in_flight(), 0);
}

/// A server may refuse a connection before its HELLO (e.g. a plaintext client of a TLS
/// address): the client reads the same REFUSE a failed handshake gives, with the server's
/// code, message, versions and codecs; once connected, a refusal is out of place.
#[test]
fn server_refuses_before_hello() {
    let mut p = Pair::default_pair();
    p.server
        .refuse(ErrorCode::PERMISSION_DENIED, "this address requires TLS")
        .unwrap();
    assert!(p.server.is_closed());
    p.drive();
    match p.client_err.take().unwrap() {
        ProtocolError::Refused {
            code,
            accepted,
            message,
            ..
        } => {
            assert_eq!(code, ErrorCode::PERMISSION_DENIED);
            assert_eq!(accepted, vec![CodecId::JSON, CodecId::MSGPACK]);
            assert!(message.contains("requires TLS"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(p.client.is_closed());

    let mut q = Pair::connected();
    assert_eq!(
        q.server
            .refuse(ErrorCode::PERMISSION_DENIED, "too late")
            .unwrap_err()
            .kind_name(),
        "invalid_state"
    );
    assert!(!q.server.is_closed());
}

// ---------------------------------------------------------------------------------------
// Ordered batches (SPEC §6.8)
// ---------------------------------------------------------------------------------------

impl Pair {
    /// Starts call `i` of an ordered batch whose first call is `first` (`None`: this call).
    fn batch_call(&mut self, first: Option<RequestId>, last: bool, oneway: bool) -> RequestId {
        let first = first.unwrap_or_else(|| self.client.next_request_id());
        let mut req = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
        req.oneway = oneway;
        req.annotations = Annotations::builder().batch(first, last).build();
        self.client.call(req, self.now).unwrap()
    }

    fn batch(&mut self, n: usize) -> Vec<RequestId> {
        let first = self.batch_call(None, n == 1, false);
        let mut ids = vec![first];
        for i in 1..n {
            ids.push(self.batch_call(Some(first), i == n - 1, false));
        }
        ids
    }
}

fn call_ids(events: Vec<ServerEvent>) -> Vec<RequestId> {
    calls(events).into_iter().map(|c| c.request_id).collect()
}

fn error_codes(events: Vec<ClientEvent>) -> Vec<(RequestId, ErrorCode)> {
    events
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Error(e) => Some((e.request_id, e.body.code)),
            _ => None,
        })
        .collect()
}

#[test]
fn batch_calls_are_dispatched_one_at_a_time_in_order() {
    let mut p = Pair::connected();
    let ids = p.batch(3);
    let plain = p.call("other", b"");
    p.drive();
    // Only the first call of the batch runs; the plain call is not held back.
    assert_eq!(call_ids(p.server_events()), vec![ids[0], plain]);
    assert_eq!(p.server.in_flight(), 4, "held calls count as in flight");
    p.reply(ids[0], b"\x01").unwrap();
    assert_eq!(call_ids(p.server_events()), vec![ids[1]]);
    p.reply(ids[1], b"\x02").unwrap();
    assert_eq!(call_ids(p.server_events()), vec![ids[2]]);
    p.reply(ids[2], b"\x03").unwrap();
    p.reply(plain, b"").unwrap();
    p.drive();
    let replies: Vec<RequestId> = p
        .client_events()
        .into_iter()
        .map(|e| match e {
            ClientEvent::Reply(r) => r.request_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(replies, vec![ids[0], ids[1], ids[2], plain]);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn batch_stops_at_the_first_error_and_skips_the_rest() {
    let mut p = Pair::connected();
    let ids = p.batch(4);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![ids[0]]);
    p.reply(ids[0], b"\x01").unwrap();
    assert_eq!(call_ids(p.server_events()), vec![ids[1]]);
    p.server
        .error(ErrorFrame {
            request_id: ids[1],
            codec: CodecId::NONE,
            annotations: Annotations::new(),
            body: ErrorBody::new(ErrorCode::APPLICATION_ERROR, "boom"),
        })
        .unwrap();
    // Calls 3 and 4 are never dispatched: rejected, answered SKIPPED.
    let evs = p.server_events();
    assert_eq!(evs.len(), 2);
    assert!(evs
        .iter()
        .all(|e| matches!(e, ServerEvent::Rejected { .. })));
    assert_eq!(p.server.in_flight(), 0);
    p.drive();
    let evs = p.client_events();
    assert!(matches!(&evs[0], ClientEvent::Reply(r) if r.request_id == ids[0]));
    assert_eq!(
        error_codes(evs),
        vec![
            (ids[1], ErrorCode::APPLICATION_ERROR),
            (ids[2], ErrorCode::SKIPPED),
            (ids[3], ErrorCode::SKIPPED)
        ]
    );
    assert_eq!(p.client.in_flight(), 0);
    assert!(!ErrorCode::SKIPPED.is_retryable());
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn batch_calls_arriving_after_the_failure_are_skipped_and_the_batch_closes() {
    let mut p = Pair::connected();
    let first = p.batch_call(None, false, false);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![first]);
    p.server
        .error(ErrorFrame {
            request_id: first,
            codec: CodecId::NONE,
            annotations: Annotations::new(),
            body: ErrorBody::new(ErrorCode::APPLICATION_ERROR, "boom"),
        })
        .unwrap();
    // A oneway call of the failed batch is dropped, a two-way one answered SKIPPED.
    let ow = p.batch_call(Some(first), false, true);
    let last = p.batch_call(Some(first), true, false);
    p.drive();
    let evs = p.server_events();
    assert!(
        matches!(&evs[..], [ServerEvent::Rejected { request_id: a, .. }, ServerEvent::Rejected { request_id: b, .. }] if *a == ow && *b == last)
    );
    assert_eq!(
        error_codes(p.client_events()),
        vec![
            (first, ErrorCode::APPLICATION_ERROR),
            (last, ErrorCode::SKIPPED)
        ]
    );
    // The batch is closed; its last call came: naming it again is a protocol error.
    p.batch_call(Some(first), true, false);
    p.drive();
    assert!(p.server_err.is_none(), "a closed batch's call is skipped");
    assert_eq!(error_codes(p.client_events())[0].1, ErrorCode::SKIPPED);
}

#[test]
fn oneway_calls_of_a_batch_run_in_their_turn() {
    let mut p = Pair::connected();
    let first = p.batch_call(None, false, false);
    let ow = p.batch_call(Some(first), false, true);
    let last = p.batch_call(Some(first), true, false);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![first]);
    p.reply(first, b"").unwrap();
    // The oneway call has no answer to wait for: the next call follows at once.
    assert_eq!(call_ids(p.server_events()), vec![ow, last]);
    p.reply(last, b"").unwrap();
    p.drive();
    assert_eq!(p.client_events().len(), 2);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn cancelling_a_held_batch_call_fails_the_batch_from_there() {
    let mut p = Pair::connected();
    let ids = p.batch(4);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![ids[0]]);
    // Call 3 is cancelled while call 1 runs: call 2 still runs, call 4 is skipped.
    p.client.cancel(ids[2]).unwrap();
    p.drive();
    let evs = p.server_events();
    assert!(matches!(&evs[0], ServerEvent::Cancelled(id) if *id == ids[2]));
    assert!(matches!(&evs[1], ServerEvent::Rejected { request_id, .. } if *request_id == ids[3]));
    assert_eq!(evs.len(), 2);
    p.reply(ids[0], b"").unwrap();
    assert_eq!(call_ids(p.server_events()), vec![ids[1]]);
    p.reply(ids[1], b"").unwrap();
    assert_eq!(p.server_events(), vec![]);
    p.drive();
    assert_eq!(
        error_codes(p.client_events()),
        vec![(ids[3], ErrorCode::SKIPPED)],
        "the cancelled call's CANCELLED is swallowed by the client"
    );
    assert_eq!((p.client.in_flight(), p.server.in_flight()), (0, 0));
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn batch_deadline_of_the_running_call_skips_the_rest() {
    let mut p = Pair::connected();
    let first = p.client.next_request_id();
    let mut req = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
    req.annotations = Annotations::builder()
        .deadline(Duration::from_millis(10))
        .batch(first, false)
        .build();
    assert_eq!(p.client.call(req, p.now).unwrap(), first);
    let second = p.batch_call(Some(first), true, false);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![first]);
    p.advance(Duration::from_millis(10));
    let evs = p.server_events();
    assert!(matches!(&evs[0], ServerEvent::Expired(id) if *id == first));
    assert!(matches!(&evs[1], ServerEvent::Rejected { request_id, .. } if *request_id == second));
    p.drive();
    assert!(error_codes(p.client_events()).contains(&(second, ErrorCode::SKIPPED)));
    assert_eq!(p.server.in_flight(), 0);
}

#[test]
fn a_rejected_first_call_fails_its_batch() {
    let mut p = Pair::connected();
    let first = p.client.next_request_id();
    let mut req = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
    req.codec = Some(CodecId::CBOR); // not accepted by the server
    req.annotations = Annotations::builder().batch(first, false).build();
    p.client.call(req, p.now).unwrap();
    let second = p.batch_call(Some(first), true, false);
    p.drive();
    assert_eq!(
        error_codes(p.client_events()),
        vec![
            (first, ErrorCode::CODEC_REFUSED),
            (second, ErrorCode::SKIPPED)
        ]
    );
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn batch_annotation_naming_no_open_batch_is_a_protocol_error() {
    let mut p = Pair::connected();
    // Names a later id, not its own and not an open batch.
    let next = p.client.next_request_id();
    let mut req = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
    req.annotations = Annotations::builder()
        .batch(RequestId(next.0 + 5), true)
        .build();
    p.client.call(req, p.now).unwrap();
    p.drive();
    let e = p.server_err.clone().expect("server error");
    assert_eq!(e.kind_name(), "malformed_body");
    assert!(e.to_string().contains("wc.batch"), "{e}");
    assert!(p.client_err.is_some(), "the client is told by GOAWAY");
}

#[test]
fn batch_annotation_value_is_checked() {
    for (value, why) in [
        (&[0u8; 8][..], "9 bytes"),
        (&[0, 0, 0, 0, 0, 0, 0, 1, 2][..], "flag"),
        (&[0u8; 9][..], "request id 0"),
    ] {
        let mut section = vec![8u8];
        section.extend_from_slice(b"wc.batch");
        section.extend_from_slice(&(value.len() as u32).to_be_bytes());
        section.extend_from_slice(value);
        let e = Annotations::from_wire(Bytes::from(section)).unwrap_err();
        assert_eq!(e.kind_name(), "malformed_body");
        assert!(e.to_string().contains(why), "{e}");
    }
    let a = Annotations::builder().batch(RequestId(7), true).build();
    assert_eq!(a.batch(), Some((RequestId(7), true)));
    let back = Annotations::from_wire(a.as_bytes().clone()).unwrap();
    assert_eq!(back.batch(), Some((RequestId(7), true)));
}

#[test]
fn a_batch_whose_last_call_came_cannot_grow() {
    let mut p = Pair::connected();
    let ids = p.batch(2);
    p.drive();
    p.server_events();
    p.batch_call(Some(ids[0]), false, false);
    p.drive();
    let e = p.server_err.clone().expect("server error");
    assert!(e.to_string().contains("last call already came"), "{e}");
}

#[test]
fn open_batches_are_bounded_by_max_in_flight() {
    let mut server = ServerConfig::new(vec![CodecId::MSGPACK]);
    server.limits.max_in_flight = 2;
    let mut p = Pair::new(ClientConfig::new(vec![CodecId::MSGPACK]), server);
    p.drive();
    p.client_events();
    p.server_events();
    // Two batches left open (never sent their last call), each first call answered.
    for _ in 0..2 {
        let id = p.batch_call(None, false, false);
        p.drive();
        p.server_events();
        p.reply(id, b"").unwrap();
        p.drive();
    }
    // A third batch evicts the oldest idle one; that one's later calls are skipped.
    let third = p.batch_call(None, false, false);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![third]);
    p.batch_call(Some(RequestId(1)), true, false);
    p.drive();
    let evs = p.server_events();
    assert!(
        matches!(&evs[..], [ServerEvent::Rejected { .. }]),
        "{evs:?}"
    );
    assert!(p.server_err.is_none());
    p.reply(third, b"").unwrap();
    // Two batches running (a call each in flight): a third cannot evict them.
    let mut server = ServerConfig::new(vec![CodecId::MSGPACK]);
    server.limits.max_in_flight = 2;
    let mut p = Pair::new(ClientConfig::new(vec![CodecId::MSGPACK]), server);
    p.drive();
    p.batch_call(None, false, false);
    p.batch_call(None, false, false);
    p.batch_call(None, false, true);
    p.drive();
    let e = p
        .server_err
        .clone()
        .expect("a third running batch is refused");
    assert!(e.to_string().contains("max_in_flight"), "{e}");
}

#[test]
fn a_drained_batch_answers_each_call_once() {
    let mut p = Pair::connected();
    let ids = p.batch(3);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![ids[0]]);
    p.server
        .shutdown("bye", p.now, Duration::from_millis(10))
        .unwrap();
    p.advance(Duration::from_millis(10));
    p.drive();
    // The running call is given up, the held ones skipped: one final answer each (a
    // second would be `unknown_request` on the client).
    assert_eq!(
        error_codes(p.client_events()),
        vec![
            (ids[0], ErrorCode::SHUTTING_DOWN),
            (ids[1], ErrorCode::SKIPPED),
            (ids[2], ErrorCode::SKIPPED)
        ]
    );
    assert!(p.client_err.is_none() && p.server_err.is_none());
    assert_eq!((p.client.in_flight(), p.server.in_flight()), (0, 0));
}

#[test]
fn a_held_call_past_its_deadline_fails_the_batch_from_there() {
    let mut p = Pair::connected();
    let first = p.batch_call(None, false, false);
    let mut req = CallRequest::new(ProviderId(1), Method::new("m").unwrap(), Bytes::new());
    req.annotations = Annotations::builder()
        .deadline(Duration::from_millis(5))
        .batch(first, false)
        .build();
    let timed = p.client.call(req, p.now).unwrap();
    let last = p.batch_call(Some(first), true, false);
    p.drive();
    assert_eq!(call_ids(p.server_events()), vec![first]);
    p.advance(Duration::from_millis(5));
    let evs = p.server_events();
    assert!(
        matches!(&evs[0], ServerEvent::Expired(id) if *id == timed),
        "{evs:?}"
    );
    assert!(matches!(&evs[1], ServerEvent::Rejected { request_id, .. } if *request_id == last));
    // The call before it still completes normally; nothing more is dispatched.
    p.reply(first, b"").unwrap();
    assert_eq!(p.server_events(), vec![]);
    p.drive();
    let evs = p.client_events();
    assert!(
        error_codes(evs.clone()).contains(&(last, ErrorCode::SKIPPED)),
        "{evs:?}"
    );
    assert!(evs
        .iter()
        .any(|e| matches!(e, ClientEvent::Reply(r) if r.request_id == first)));
    assert!(p.client_err.is_none() && p.server_err.is_none());
    assert_eq!((p.client.in_flight(), p.server.in_flight()), (0, 0));
}

// ---- stream flow control (SPEC §6.12) ----

fn stream_call(p: &mut Pair, window: u32) -> RequestId {
    let mut req = CallRequest::new(
        ProviderId(1),
        Method::new("gen").unwrap(),
        Bytes::from_static(b"\x90"),
    );
    req.annotations = Annotations::builder().window(window).build();
    let id = p.client.call(req, p.now).unwrap();
    p.drive();
    let c = calls(p.server_events()).remove(0);
    assert_eq!(c.annotations.window(), Some(window));
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::MSGPACK,
            stream: true,
            annotations: Annotations::new(),
            result: Bytes::new(),
            attachment: Bytes::new(),
        })
        .unwrap();
    id
}

fn item(id: RequestId, n: u8) -> StreamItem {
    StreamItem {
        request_id: id,
        codec: CodecId::MSGPACK,
        annotations: Annotations::new(),
        item: Bytes::from(vec![n]),
        attachment: Bytes::new(),
    }
}

/// The plain-item path a driver uses in its pump (one lookup, no owned frame) sends the
/// same bytes and applies the same rules as `stream_item`.
#[test]
fn plain_stream_items_match_stream_item() {
    let mut sent = Vec::new();
    for plain in [false, true] {
        let mut p = Pair::connected();
        let id = stream_call(&mut p, 2);
        p.drive();
        p.s2c.clear();
        let send = |p: &mut Pair, n: u8| {
            if plain {
                p.server
                    .stream_item_plain(id, CodecId::MSGPACK, &Bytes::from(vec![n; 3]), p.now)
            } else {
                let mut i = item(id, n);
                i.item = Bytes::from(vec![n; 3]);
                p.server.stream_item(i, p.now)
            }
        };
        send(&mut p, 1).unwrap();
        send(&mut p, 2).unwrap();
        assert_eq!(
            send(&mut p, 3).unwrap_err(),
            ProtocolError::NoCredit { request_id: id }
        );
        assert_eq!(p.server.credit(id), Some(0));
        p.drive();
        sent.push(p.s2c.concat());
        // Not in flight once ended; a call without a stream is refused.
        p.server.stream_end(id).unwrap();
        assert!(matches!(
            send(&mut p, 4),
            Err(ProtocolError::NotInFlight { .. })
        ));
    }
    assert_eq!(sent[0], sent[1]);
    assert!(!sent[0].is_empty());
}

#[test]
fn stream_items_wait_for_credit() {
    let mut p = Pair::connected();
    let id = stream_call(&mut p, 2);
    assert_eq!(p.server.credit(id), Some(2));
    p.server.stream_item(item(id, 1), p.now).unwrap();
    p.server.stream_item(item(id, 2), p.now).unwrap();
    // The window is used up: the third item is refused locally, nothing is sent.
    assert_eq!(
        p.server.stream_item(item(id, 3), p.now).unwrap_err(),
        ProtocolError::NoCredit { request_id: id }
    );
    p.drive();
    let ev = p.client_events();
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(p.client.credit(id), Some(0));
    // The consumer took both items: it grants two more.
    assert!(p.client.grant(id, 2).unwrap());
    p.drive();
    assert_eq!(
        p.server_events(),
        vec![ServerEvent::Credit {
            request_id: id,
            credit: 2
        }]
    );
    p.server.stream_item(item(id, 3), p.now).unwrap();
    p.server.stream_end(id).unwrap();
    p.drive();
    let ev = p.client_events();
    assert!(matches!(&ev[0], ClientEvent::StreamItem(s) if s.item[..] == [3]));
    assert_eq!(ev[1], ClientEvent::StreamEnd(id));
    // A grant for a stream that ended sends nothing.
    assert!(!p.client.grant(id, 1).unwrap());
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn a_call_without_a_window_streams_without_credit() {
    let mut p = Pair::connected();
    let id = p.call("gen", b"\x90");
    p.drive();
    p.server_events();
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::MSGPACK,
            stream: true,
            annotations: Annotations::new(),
            result: Bytes::new(),
            attachment: Bytes::new(),
        })
        .unwrap();
    assert_eq!(p.server.credit(id), Some(u32::MAX));
    for n in 0..100 {
        p.server.stream_item(item(id, n), p.now).unwrap();
    }
    p.drive();
    assert_eq!(p.client_events().len(), 101);
    assert_eq!(
        p.client.grant(id, 1).unwrap_err().kind_name(),
        "invalid_state"
    );
    assert!(p.client_err.is_none());
}

#[test]
fn a_server_ignoring_credit_gets_goaway_flow_control() {
    let mut p = Pair::connected();
    let id = stream_call(&mut p, 1);
    p.server.stream_item(item(id, 1), p.now).unwrap();
    p.drive();
    // A peer that ignores its credit: a second item, encoded by hand.
    let mut raw = bytes::BytesMut::new();
    wirecall_protocol::Frame::StreamItem(item(id, 2))
        .encode(&mut raw)
        .unwrap();
    let e = p.client.handle_input(&raw, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "flow_control");
    assert_eq!(e.code(), ErrorCode::FLOW_CONTROL);
    assert!(p.client.is_closed());
    p.drive();
    match p.server_err.take() {
        Some(ProtocolError::PeerClosed { code, message }) => {
            assert_eq!(code, ErrorCode::FLOW_CONTROL);
            assert!(message.contains("no credit"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn credit_overflow_and_unknown_credit_are_fatal_a_late_credit_is_ignored() {
    // A grant that would pass u32::MAX outstanding is refused locally.
    let mut p = Pair::connected();
    let id = stream_call(&mut p, u32::MAX - 1);
    assert_eq!(
        p.client.grant(id, 2).unwrap_err().kind_name(),
        "invalid_argument"
    );
    // Sent anyway by a peer that ignores the rule: GOAWAY FLOW_CONTROL.
    let mut raw = bytes::BytesMut::new();
    wirecall_protocol::Frame::Credit(id, 2)
        .encode(&mut raw)
        .unwrap();
    let e = p.server.handle_input(&raw, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "flow_control");
    let g = goaway_sent(&server_transmit(&mut p.server)).unwrap();
    assert_eq!(g.code, ErrorCode::FLOW_CONTROL);

    // CREDIT for an id never called: unknown_request.
    let mut p = Pair::connected();
    let mut raw = bytes::BytesMut::new();
    wirecall_protocol::Frame::Credit(RequestId(9), 1)
        .encode(&mut raw)
        .unwrap();
    let e = p.server.handle_input(&raw, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "unknown_request");

    // CREDIT crossing the stream's end: ignored.
    let mut p = Pair::connected();
    let id = stream_call(&mut p, 1);
    p.server.stream_end(id).unwrap();
    let mut raw = bytes::BytesMut::new();
    wirecall_protocol::Frame::Credit(id, 1)
        .encode(&mut raw)
        .unwrap();
    p.server.handle_input(&raw, p.now).unwrap();
    assert_eq!(p.server_events(), vec![]);
    // And a CREDIT from the server is unexpected on the client.
    let e = p.client.handle_input(&raw, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "unexpected_frame");
}

#[test]
fn cancelling_a_stream_ends_it_on_the_server() {
    let mut p = Pair::connected();
    let id = stream_call(&mut p, 4);
    p.server.stream_item(item(id, 1), p.now).unwrap();
    p.drive();
    assert_eq!(p.client_events().len(), 2);
    assert!(p.client.cancel(id).unwrap());
    p.server.stream_item(item(id, 2), p.now).unwrap(); // crosses the CANCEL: swallowed
    p.drive();
    assert_eq!(p.server_events(), vec![ServerEvent::Cancelled(id)]);
    assert_eq!(
        p.server
            .stream_item(item(id, 3), p.now)
            .unwrap_err()
            .kind_name(),
        "not_in_flight"
    );
    assert_eq!(p.client_events(), vec![]);
    assert_eq!((p.client.in_flight(), p.server.in_flight()), (0, 0));
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn an_idle_stream_ends_after_its_lifetime() {
    let mut server = ServerConfig::new(vec![CodecId::JSON, CodecId::MSGPACK]);
    server.stream_lifetime = Some(Duration::from_secs(5));
    server.idle_timeout = None;
    let mut p = Pair::new(
        ClientConfig::new(vec![CodecId::MSGPACK, CodecId::JSON]),
        server,
    );
    p.drive();
    p.client_events();
    p.server_events();
    let id = stream_call(&mut p, 1);
    // Credit left: the stream is not idle, however long the producer takes.
    p.advance(Duration::from_secs(60));
    assert_eq!(p.server_events(), vec![]);
    p.server.stream_item(item(id, 1), p.now).unwrap();
    // The window is used up now: the lifetime starts.
    assert!(p
        .server
        .poll_timeout()
        .is_some_and(|t| t <= p.now + Duration::from_secs(5)));
    p.advance(Duration::from_secs(4));
    assert_eq!(p.server_events(), vec![]);
    // A CREDIT in time stops the clock.
    assert!(p.client.grant(id, 1).unwrap());
    p.drive();
    assert!(matches!(
        p.server_events()[..],
        [ServerEvent::Credit { .. }]
    ));
    p.advance(Duration::from_secs(4));
    assert_eq!(p.server_events(), vec![]);
    p.server.stream_item(item(id, 2), p.now).unwrap();
    p.advance(Duration::from_secs(4));
    assert_eq!(p.server_events(), vec![]);
    p.advance(Duration::from_secs(1));
    assert_eq!(p.server_events().last(), Some(&ServerEvent::Expired(id)));
    p.drive();
    let ev = p.client_events();
    match ev.last() {
        Some(ClientEvent::Error(e)) => {
            assert_eq!(e.body.code, ErrorCode::DEADLINE_EXCEEDED);
            assert!(e.body.message.contains("lifetime"), "{}", e.body.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((p.client.in_flight(), p.server.in_flight()), (0, 0));
    assert!(p.client_err.is_none() && p.server_err.is_none());
}
