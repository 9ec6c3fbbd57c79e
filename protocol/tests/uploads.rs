//! Client → server streams (SPEC §6.13): a call with flag UPLOAD streams its arguments
//! as STREAM_ITEM frames from the client, ended by the client's STREAM_END, under the
//! server's credit. Both machines wired in memory, no sockets.

mod common;

use bytes::{Bytes, BytesMut};
use common::Pair;
use wirecall_protocol::{
    Annotations, CallRequest, ClientConfig, ClientEvent, CodecId, ErrorCode, Frame, Method,
    ProtocolError, ProviderId, Reply, RequestId, ServerConfig, ServerEvent, StreamItem,
};

const WINDOW: u32 = 4;

impl Pair {
    /// A pair whose server takes argument streams with a window of `WINDOW` items (when
    /// `server` is true) and whose client offers them (when `client` is true).
    fn uploads(client: bool, server: bool) -> Pair {
        let mut c = ClientConfig::new(vec![CodecId::JSON]);
        if client {
            c.offer_uploads();
        }
        let mut s = ServerConfig::new(vec![CodecId::JSON]);
        if server {
            s.support_uploads(WINDOW).unwrap();
        }
        let mut p = Pair::new(c, s);
        p.handshake();
        p
    }

    fn upload_call(&mut self, annotations: Annotations) -> Result<RequestId, ProtocolError> {
        let mut req = CallRequest::new(
            ProviderId(1),
            Method::new("sum").unwrap(),
            Bytes::from_static(b"[]"),
        );
        req.upload = true;
        req.annotations = annotations;
        let id = self.client.call(req, self.now)?;
        self.drive();
        Ok(id)
    }

    fn item(id: RequestId, n: u32) -> StreamItem {
        StreamItem {
            request_id: id,
            codec: CodecId::JSON,
            annotations: Annotations::new(),
            item: Bytes::from(n.to_string()),
            attachment: Bytes::new(),
        }
    }

    /// Sends items `from..` until the client's credit runs out; returns how many went.
    fn send_until_no_credit(&mut self, id: RequestId, from: u32) -> u32 {
        let mut n = 0;
        loop {
            match self.client.send_item(Pair::item(id, from + n)) {
                Ok(()) => n += 1,
                Err(ProtocolError::NoCredit { request_id }) => {
                    assert_eq!(request_id, id);
                    self.drive();
                    return n;
                }
                Err(e) => panic!("send_item: {e}"),
            }
        }
    }

    /// The argument items the server reported, by their payload, and whether the stream
    /// ended.
    fn server_items(&mut self) -> (Vec<String>, bool) {
        let mut items = Vec::new();
        let mut end = false;
        for e in self.server_events() {
            match e {
                ServerEvent::StreamItem(s) => {
                    assert!(!end, "an item after the end");
                    items.push(String::from_utf8(s.item.to_vec()).unwrap());
                }
                ServerEvent::StreamEnd(_) => end = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        (items, end)
    }

    /// Feeds the server a raw frame as if the client sent it.
    fn inject(&mut self, f: Frame) {
        let mut b = BytesMut::new();
        f.encode(&mut b).unwrap();
        if let Err(e) = self.server.handle_input(&b, self.now) {
            self.server_err.get_or_insert(e);
        }
        self.drive();
    }

    /// The GOAWAY codes the server sent.
    fn server_goaways(&self) -> Vec<ErrorCode> {
        let mut d = wirecall_protocol::FrameDecoder::new(wirecall_protocol::Limits::default());
        let mut buf = BytesMut::new();
        for chunk in &self.s2c {
            buf.extend_from_slice(chunk);
        }
        let mut codes = Vec::new();
        while let Ok(Some(f)) = d.decode(&mut buf) {
            if let Frame::GoAway(g) = f {
                codes.push(g.code);
            }
        }
        codes
    }
}

#[test]
fn the_window_is_agreed_in_the_handshake() {
    let p = Pair::uploads(true, true);
    assert_eq!(p.client.session().unwrap().upload_window(), Some(WINDOW));
    assert_eq!(p.server.session().unwrap().upload_window(), Some(WINDOW));
    // Either side without it: not in force, and a call cannot stream its arguments.
    for (c, s) in [(false, true), (true, false)] {
        let mut p = Pair::uploads(c, s);
        assert_eq!(p.client.session().unwrap().upload_window(), None);
        let err = p.upload_call(Annotations::new()).unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidState { .. }), "{err:?}");
        assert!(err.to_string().contains("not in force"), "{err}");
        assert!(p.c2s.is_empty(), "nothing sent");
    }
}

#[test]
fn items_flow_under_the_servers_credit_and_end_with_stream_end() {
    let mut p = Pair::uploads(true, true);
    let id = p.upload_call(Annotations::new()).unwrap();
    let call = p.server_call();
    assert!(call.upload);
    assert_eq!(p.client.upload_credit(id), Some(WINDOW));
    // The window, and not one item more.
    assert_eq!(p.send_until_no_credit(id, 0), WINDOW);
    assert_eq!(p.client.upload_credit(id), Some(0));
    assert_eq!(p.server.upload_credit(id), Some(0));
    let (items, end) = p.server_items();
    assert_eq!(items, ["0", "1", "2", "3"]);
    assert!(!end);
    // The handler took two: the server grants two; the client may send two more.
    assert!(p.server.grant(id, 2).unwrap());
    p.drive();
    assert_eq!(
        p.client_events(),
        [ClientEvent::Credit {
            request_id: id,
            credit: 2
        }]
    );
    assert_eq!(p.send_until_no_credit(id, 4), 2);
    assert!(p.client.end_upload(id).unwrap());
    p.drive();
    let (items, end) = p.server_items();
    assert_eq!(items, ["4", "5"]);
    assert!(end);
    // The stream is closed on both sides; the call is still in flight until the answer.
    assert_eq!(p.client.upload_credit(id), None);
    assert_eq!(p.server.upload_credit(id), None);
    assert!(
        !p.server.grant(id, 1).unwrap(),
        "no credit for an ended stream"
    );
    assert_eq!(p.client.in_flight(), 1);
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::JSON,
            stream: false,
            annotations: Annotations::new(),
            result: Bytes::from_static(b"15"),
            attachment: Bytes::new(),
        })
        .unwrap();
    p.drive();
    assert!(matches!(&p.client_events()[..], [ClientEvent::Reply(r)] if r.result == "15"));
    assert_eq!(p.client.in_flight(), 0);
    assert_eq!(p.server.in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn an_early_answer_ends_the_upload_and_items_that_crossed_it_are_ignored() {
    let mut p = Pair::uploads(true, true);
    let id = p.upload_call(Annotations::new()).unwrap();
    p.server_call();
    // The client sends two items; the server answers before reading them.
    p.client.send_item(Pair::item(id, 0)).unwrap();
    p.client.send_item(Pair::item(id, 1)).unwrap();
    p.server
        .error(wirecall_protocol::ErrorFrame {
            request_id: id,
            codec: CodecId::NONE,
            annotations: Annotations::new(),
            body: wirecall_protocol::ErrorBody::new(ErrorCode::BAD_ARGUMENTS, "no thanks"),
        })
        .unwrap();
    p.drive();
    // The items reached the server after its answer: ignored, the connection goes on.
    assert!(p.server_events().is_empty());
    assert!(matches!(&p.client_events()[..], [ClientEvent::Error(_)]));
    assert!(matches!(
        p.client.send_item(Pair::item(id, 2)),
        Err(ProtocolError::NotInFlight { .. })
    ));
    assert!(!p.client.end_upload(id).unwrap(), "nothing to end");
    // A STREAM_END crossing the answer is ignored too.
    p.inject(Frame::StreamEnd(id));
    assert!(p.client_err.is_none() && p.server_err.is_none());
    assert!(p.server_goaways().is_empty());
}

#[test]
fn cancel_stops_the_upload() {
    let mut p = Pair::uploads(true, true);
    let id = p.upload_call(Annotations::new()).unwrap();
    p.server_call();
    p.client.send_item(Pair::item(id, 0)).unwrap();
    assert!(p.client.cancel(id).unwrap());
    assert_eq!(p.client.upload_credit(id), None);
    assert!(matches!(
        p.client.send_item(Pair::item(id, 1)),
        Err(ProtocolError::NotInFlight { .. })
    ));
    p.drive();
    let events = p.server_events();
    assert!(
        matches!(&events[..], [ServerEvent::StreamItem(_), ServerEvent::Cancelled(c)] if *c == id),
        "{events:?}"
    );
    // The CANCELLED answer is swallowed by the client; nothing else happens.
    assert!(p.client_events().is_empty());
    assert_eq!(p.client.in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn a_client_that_ignores_the_credit_is_closed_with_flow_control() {
    let mut p = Pair::uploads(true, true);
    let id = p.upload_call(Annotations::new()).unwrap();
    p.server_call();
    assert_eq!(p.send_until_no_credit(id, 0), WINDOW);
    p.server_items();
    // One item more than the window, written by hand.
    p.inject(Frame::StreamItem(Pair::item(id, 99)));
    assert!(matches!(
        p.server_err,
        Some(ProtocolError::FlowControl { request_id, .. }) if request_id == id
    ));
    assert_eq!(p.server_goaways(), [ErrorCode::FLOW_CONTROL]);
    assert!(p.server.is_closed());
}

#[test]
fn items_after_the_end_or_for_calls_without_an_upload_are_fatal() {
    // After the client's STREAM_END.
    let mut p = Pair::uploads(true, true);
    let id = p.upload_call(Annotations::new()).unwrap();
    p.server_call();
    p.client.end_upload(id).unwrap();
    p.drive();
    p.server_items();
    p.inject(Frame::StreamItem(Pair::item(id, 0)));
    assert!(matches!(
        p.server_err,
        Some(ProtocolError::UnexpectedFrame { .. })
    ));
    assert_eq!(p.server_goaways(), [ErrorCode::PROTOCOL_ERROR]);

    // For a call in flight that was sent without flag UPLOAD.
    let mut p = Pair::uploads(true, true);
    let id = p
        .client
        .call(
            CallRequest::new(
                ProviderId(1),
                Method::new("m").unwrap(),
                Bytes::from_static(b"[]"),
            ),
            p.now,
        )
        .unwrap();
    p.drive();
    p.server_call();
    p.inject(Frame::StreamEnd(id));
    assert!(matches!(
        p.server_err,
        Some(ProtocolError::UnexpectedFrame { .. })
    ));

    // For a request id above every call received.
    let mut p = Pair::uploads(true, true);
    p.inject(Frame::StreamItem(Pair::item(RequestId(7), 0)));
    assert!(matches!(
        p.server_err,
        Some(ProtocolError::UnknownRequest { .. })
    ));

    // Without the extension in force, a client STREAM_ITEM stays unexpected.
    let mut p = Pair::uploads(false, true);
    p.inject(Frame::StreamItem(Pair::item(RequestId(1), 0)));
    assert!(matches!(
        p.server_err,
        Some(ProtocolError::UnexpectedFrame { .. })
    ));
}

#[test]
fn a_call_with_upload_is_refused_where_it_cannot_work() {
    let mut p = Pair::uploads(true, true);
    // Oneway: nothing would end the stream.
    let mut req = CallRequest::new(
        ProviderId(1),
        Method::new("m").unwrap(),
        Bytes::from_static(b"[]"),
    );
    req.upload = true;
    req.oneway = true;
    assert!(matches!(
        p.client.call(req, p.now),
        Err(ProtocolError::InvalidArgument(_))
    ));
    // In an ordered batch.
    let err = p
        .upload_call(Annotations::builder().batch(RequestId(1), true).build())
        .unwrap_err();
    assert!(matches!(err, ProtocolError::InvalidArgument(_)), "{err:?}");
    assert!(p.c2s.is_empty());
    // A server without the extension closes on a CALL with UPLOAD (a peer that ignored
    // the handshake).
    let mut p = Pair::uploads(true, false);
    let mut b = BytesMut::new();
    Frame::Call(wirecall_protocol::Call {
        request_id: RequestId(1),
        provider: ProviderId(1),
        codec: CodecId::JSON,
        oneway: false,
        upload: true,
        method: Method::new("m").unwrap(),
        annotations: Annotations::new(),
        args: Bytes::from_static(b"[]"),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
    .encode(&mut b)
    .unwrap();
    assert!(matches!(
        p.server.handle_input(&b, p.now),
        Err(ProtocolError::BadFlags { .. })
    ));
}

#[test]
fn bidirectional_a_streamed_result_and_an_argument_stream_on_one_call() {
    let mut p = Pair::uploads(true, true);
    let id = p
        .upload_call(Annotations::builder().window(2).build())
        .unwrap();
    p.server_call();
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::JSON,
            stream: true,
            annotations: Annotations::new(),
            result: Bytes::new(),
            attachment: Bytes::new(),
        })
        .unwrap();
    p.drive();
    assert!(matches!(&p.client_events()[..], [ClientEvent::Reply(r)] if r.stream));
    // Each direction under its own credit: two items down, four up.
    for n in 0..2 {
        p.server.stream_item(Pair::item(id, n), p.now).unwrap();
    }
    assert!(matches!(
        p.server.stream_item(Pair::item(id, 2), p.now),
        Err(ProtocolError::NoCredit { .. })
    ));
    assert_eq!(p.send_until_no_credit(id, 10), WINDOW);
    p.drive();
    let down: Vec<_> = p
        .client_events()
        .into_iter()
        .map(|e| match e {
            ClientEvent::StreamItem(s) => s.item,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(down, ["0", "1"]);
    assert_eq!(p.server_items().0, ["10", "11", "12", "13"]);
    // The client ends its stream; the server's goes on, then ends.
    p.client.end_upload(id).unwrap();
    p.client.grant(id, 1).unwrap();
    p.drive();
    let events = p.server_events();
    assert!(
        matches!(
            &events[..],
            [
                ServerEvent::StreamEnd(_),
                ServerEvent::Credit { credit: 1, .. }
            ]
        ),
        "{events:?}"
    );
    p.server.stream_item(Pair::item(id, 2), p.now).unwrap();
    p.server.stream_end(id).unwrap();
    p.drive();
    let events = p.client_events();
    assert!(
        matches!(
            &events[..],
            [ClientEvent::StreamItem(_), ClientEvent::StreamEnd(_)]
        ),
        "{events:?}"
    );
    assert_eq!(p.client.in_flight(), 0);
    assert_eq!(p.server.in_flight(), 0);
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn credit_for_the_upload_is_checked_by_the_client() {
    // Past 2^32-1 outstanding: fatal.
    let mut p = Pair::uploads(true, true);
    let id = p.upload_call(Annotations::new()).unwrap();
    p.server_call();
    let mut b = BytesMut::new();
    Frame::Credit(id, u32::MAX).encode(&mut b).unwrap();
    assert!(matches!(
        p.client.handle_input(&b, p.now),
        Err(ProtocolError::FlowControl { .. })
    ));

    // For a call never started: unknown request.
    let mut p = Pair::uploads(true, true);
    let mut b = BytesMut::new();
    Frame::Credit(RequestId(3), 1).encode(&mut b).unwrap();
    assert!(matches!(
        p.client.handle_input(&b, p.now),
        Err(ProtocolError::UnknownRequest { .. })
    ));

    // Without the extension: CREDIT from the server is unexpected, as before.
    let mut p = Pair::uploads(false, true);
    let id = p
        .client
        .call(
            CallRequest::new(
                ProviderId(1),
                Method::new("m").unwrap(),
                Bytes::from_static(b"[]"),
            ),
            p.now,
        )
        .unwrap();
    p.drive();
    let mut b = BytesMut::new();
    Frame::Credit(id, 1).encode(&mut b).unwrap();
    assert!(matches!(
        p.client.handle_input(&b, p.now),
        Err(ProtocolError::UnexpectedFrame { .. })
    ));
}

#[test]
fn callbacks_do_not_stream_their_arguments() {
    let mut c = ClientConfig::new(vec![CodecId::JSON]);
    c.offer_uploads();
    c.offer_callbacks(None).unwrap();
    let mut s = ServerConfig::new(vec![CodecId::JSON]);
    s.support_uploads(WINDOW).unwrap();
    s.support_callbacks();
    let mut p = Pair::new(c, s);
    p.handshake();
    let mut b = BytesMut::new();
    Frame::Call(wirecall_protocol::Call {
        request_id: RequestId(1),
        provider: ProviderId(0),
        codec: CodecId::JSON,
        oneway: false,
        upload: true,
        method: Method::new("progress").unwrap(),
        annotations: Annotations::new(),
        args: Bytes::from_static(b"[]"),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
    .encode(&mut b)
    .unwrap();
    assert!(matches!(
        p.client.handle_input(&b, p.now),
        Err(ProtocolError::BadFlags { .. })
    ));
}
