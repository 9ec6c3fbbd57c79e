//! The Pyro5 dialect (`wirecall_protocol::pyro`) against the captured traffic of the Pyro5
//! reference (§6: an unmodified Pyro5 5.17 proxy and daemon over a logging loopback relay),
//! the daemon's error paths (§2.13), and properties over random input. No sockets: the
//! session machines are driven with bytes, as quinn tests quinn-proto.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use wirecall_protocol::pyro::{
    unmarshal_str, AnnotationId, Annotations, ClientConfig, ClientEvent, ClientSession, Flags,
    Header, Message, MessageDecoder, MessageLimits, MessageType, Reply, Request, SerializerId,
    ServerConfig, ServerEvent, ServerSession, HEADER_LEN,
};
use wirecall_protocol::{detect_dialect, CodecId, Dialect, ProtocolError};

// ---------------------------------------------------------------------------------------
// Captured traffic, pasted from the Pyro5 reference's §6.1 and §6.2 hex dumps (Pyro5 5.17
// client and daemon). Bytes 0x14-0x23 of daemon messages are a random correlation id.
// ---------------------------------------------------------------------------------------

/// conn1 C>S msg#0: CONNECT ser=serpent seq=0 flags=0x00 dlen=68 alen=0
const C1_CONNECT: &str = concat!(
    "5059524f01f601010000000000000044000000000000000000000000000000000000000000004dc5232073657270656e",
    "74207574662d3820707974686f6e332e320a7b2768616e647368616b65273a2768656c6c6f272c276f626a656374273a",
    "27746573742e63616c63277d",
);
/// conn1 S>C msg#0: CONNECTOK ser=serpent seq=0 flags=0x40 dlen=142 alen=0
const C1_CONNECTOK: &str = concat!(
    "5059524f01f60201004000000000008e00000000d37877a06e9445caa9245c4b15477ee500004dc5232073657270656e",
    "74207574662d3820707974686f6e332e320a7b2768616e647368616b65273a2768656c6c6f272c276d657461273a7b27",
    "6d6574686f6473273a7b2766697265272c2767656e272c276661696c272c27616464272c276563686f272c276b77277d",
    "2c276f6e65776179273a7b2766697265277d2c276174747273273a7b2776616c7565277d7d7d",
);
/// conn1 C>S msg#1: INVOKE ser=serpent seq=1 flags=0x00 dlen=54 alen=0
const C1_INVOKE: &str = concat!(
    "5059524f01f604010000000100000036000000000000000000000000000000000000000000004dc5232073657270656e",
    "74207574662d3820707974686f6e332e320a2827746573742e63616c63272c27616464272c28312c32292c7b7d29",
);
/// conn1 S>C msg#1: RESULT ser=serpent seq=1 flags=0x40 dlen=27 alen=0
const C1_RESULT: &str = concat!(
    "5059524f01f60501004000010000001b00000000e29cd4b2317a4d61b3ccd69c44374cab00004dc5232073657270656e",
    "74207574662d3820707974686f6e332e320a33",
);
/// conn1 S>C msg#7: RESULT ser=serpent seq=8 flags=0x51 dlen=168 alen=44
const C1_STREAM_RESULT: &str = concat!(
    "5059524f01f6050100510008000000a80000002cc3142cd3d2d541d0965e2aad9d4d597100004dc55354524d00000024",
    "63653638353836382d326635622d343837312d386162362d373036666138393566653661232073657270656e74207574",
    "662d3820707974686f6e332e320a7b275f5f636c6173735f5f273a275079726f352e6572726f72732e50726f746f636f",
    "6c4572726f72272c275f5f657863657074696f6e5f5f273a547275652c2761726773273a2827726573756c74206f6620",
    "63616c6c20697320616e206974657261746f72272c292c2761747472696275746573273a7b275f7079726f5472616365",
    "6261636b273a4e6f6e657d7d",
);
/// conn1 C>S msg#13: PING ser=42 seq=0 flags=0x00 dlen=4 alen=0
const C1_PING: &str =
    "5059524f01f6062a0000000000000004000000000000000000000000000000000000000000004dc570696e67";
/// conn1 S>C msg#12: PING ser=42 seq=0 flags=0x40 dlen=4 alen=0
const C1_PONG: &str =
    "5059524f01f6062a0040000000000004000000001633ebb2b2a149ff9c000377685f51d200004dc5706f6e67";
/// conn2 C>S msg#0: CONNECT ser=json seq=0 flags=0x00 dlen=45 alen=0
const C2_CONNECT: &str = concat!(
    "5059524f01f60103000000000000002d000000000000000000000000000000000000000000004dc57b2268616e647368",
    "616b65223a202268656c6c6f222c20226f626a656374223a2022746573742e63616c63227d",
);
/// conn2 S>C msg#0: CONNECTOK ser=json seq=0 flags=0x40 dlen=129 alen=0
const C2_CONNECTOK: &str = concat!(
    "5059524f01f602030040000000000081000000007b96cfef3c2843d2982cd01d2269c29400004dc57b2268616e647368",
    "616b65223a202268656c6c6f222c20226d657461223a207b226d6574686f6473223a205b2266697265222c202267656e",
    "222c20226661696c222c2022616464222c20226563686f222c20226b77225d2c20226f6e65776179223a205b22666972",
    "65225d2c20226174747273223a205b2276616c7565225d7d7d",
);
/// conn2 C>S msg#1: INVOKE ser=json seq=1 flags=0x00 dlen=72 alen=0
const C2_INVOKE: &str = concat!(
    "5059524f01f604030000000100000048000000000000000000000000000000000000000000004dc57b226f626a656374",
    "223a2022746573742e63616c63222c20226d6574686f64223a2022616464222c2022706172616d73223a205b312c2032",
    "5d2c20226b7761726773223a207b7d7d",
);
/// conn2 S>C msg#1: RESULT ser=json seq=1 flags=0x40 dlen=1 alen=0
const C2_RESULT: &str =
    "5059524f01f605030040000100000001000000005f05389fea87429cbda7217fedb6fc4300004dc533";
/// conn3 C>S msg#0: CONNECT ser=msgpack seq=0 flags=0x00 dlen=34 alen=0
const C3_CONNECT: &str = concat!(
    "5059524f01f601040000000000000022000000000000000000000000000000000000000000004dc582a968616e647368",
    "616b65a568656c6c6fa66f626a656374a9746573742e63616c63",
);
/// conn3 S>C msg#0: CONNECTOK ser=msgpack seq=0 flags=0x40 dlen=84 alen=0
const C3_CONNECTOK: &str = concat!(
    "5059524f01f60204004000000000005400000000c0fd08ec45a84139aef00bf2a1e31c6900004dc582a968616e647368",
    "616b65a568656c6c6fa46d65746183a76d6574686f647396a466697265a367656ea46661696ca3616464a46563686fa2",
    "6b77a66f6e6577617991a466697265a5617474727391a576616c7565",
);
/// conn3 C>S msg#1: INVOKE ser=msgpack seq=1 flags=0x00 dlen=19 alen=0
const C3_INVOKE: &str = concat!(
    "5059524f01f604040000000100000013000000000000000000000000000000000000000000004dc594a9746573742e63",
    "616c63a361646492010280",
);
/// conn3 S>C msg#1: RESULT ser=msgpack seq=1 flags=0x40 dlen=1 alen=0
const C3_RESULT: &str =
    "5059524f01f605040040000100000001000000007336ce5fdc0e4ab98c067c144fcd65ff00004dc503";
/// INVOKE seq=7 with correlation id + 2 annotations (ABCD=010203, XY12=empty)
const V_INVOKE_CORR_ANNOTATIONS: &str = concat!(
    "5059524f01f604010040000700000033000000131111111122223333444455555555555500004dc54142434400000003",
    "0102035859313200000000232073657270656e74207574662d3820707974686f6e332e320a28276f626a272c27656368",
    "6f272c28276869272c292c7b7d29",
);
/// INVOKE seq=8 with COMPRESSION=True (zlib level 4; flag 0x02)
const V_INVOKE_COMPRESSED: &str = concat!(
    "5059524f01f60401000200080000003c000000000000000000000000000000000000000000004dc5785e5356284e2d2a",
    "48cd2b51282d49d3b55028a82cc9c8cf33d633e2d250cf4fca52d7514f4dcec857d7d1504f1c20a0aea3a9535dab0900",
    "7ad93bfe",
);
const ALL: [(&str, &str); 17] = [
    ("C1_CONNECT", C1_CONNECT),
    ("C1_CONNECTOK", C1_CONNECTOK),
    ("C1_INVOKE", C1_INVOKE),
    ("C1_RESULT", C1_RESULT),
    ("C1_STREAM_RESULT", C1_STREAM_RESULT),
    ("C1_PING", C1_PING),
    ("C1_PONG", C1_PONG),
    ("C2_CONNECT", C2_CONNECT),
    ("C2_CONNECTOK", C2_CONNECTOK),
    ("C2_INVOKE", C2_INVOKE),
    ("C2_RESULT", C2_RESULT),
    ("C3_CONNECT", C3_CONNECT),
    ("C3_CONNECTOK", C3_CONNECTOK),
    ("C3_INVOKE", C3_INVOKE),
    ("C3_RESULT", C3_RESULT),
    ("V_INVOKE_CORR_ANNOTATIONS", V_INVOKE_CORR_ANNOTATIONS),
    ("V_INVOKE_COMPRESSED", V_INVOKE_COMPRESSED),
];

fn bytes(hex_str: &str) -> Bytes {
    Bytes::from(hex::decode(hex_str).unwrap())
}

fn decode_one(data: &[u8]) -> Message {
    let mut buf = BytesMut::from(data);
    let mut d = MessageDecoder::new(MessageLimits::default());
    let m = d.decode(&mut buf).unwrap().expect("a whole message");
    assert!(buf.is_empty(), "one message exactly");
    m
}

/// A daemon's message with its random correlation id and the CORR_ID flag removed: what
/// wirecall's server sends to a client that set no correlation id.
fn without_corr(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v[9] &= !0x40;
    v[20..36].fill(0);
    v
}

/// The serpent text of a payload (after the header line), for readable assertions.
fn text(p: &[u8]) -> &str {
    std::str::from_utf8(p).unwrap()
}

#[test]
fn captured_messages_decode_and_reencode_byte_identically() {
    // (vector, type, serializer, seq, flags, data length, annotations length)
    let expect: [(&str, u8, u8, u16, u16, usize, usize); 17] = [
        (C1_CONNECT, 1, 1, 0, 0x00, 68, 0),
        (C1_CONNECTOK, 2, 1, 0, 0x40, 142, 0),
        (C1_INVOKE, 4, 1, 1, 0x00, 54, 0),
        (C1_RESULT, 5, 1, 1, 0x40, 27, 0),
        (C1_STREAM_RESULT, 5, 1, 8, 0x51, 168, 44),
        (C1_PING, 6, 42, 0, 0x00, 4, 0),
        (C1_PONG, 6, 42, 0, 0x40, 4, 0),
        (C2_CONNECT, 1, 3, 0, 0x00, 45, 0),
        (C2_CONNECTOK, 2, 3, 0, 0x40, 129, 0),
        (C2_INVOKE, 4, 3, 1, 0x00, 72, 0),
        (C2_RESULT, 5, 3, 1, 0x40, 1, 0),
        (C3_CONNECT, 1, 4, 0, 0x00, 34, 0),
        (C3_CONNECTOK, 2, 4, 0, 0x40, 84, 0),
        (C3_INVOKE, 4, 4, 1, 0x00, 19, 0),
        (C3_RESULT, 5, 4, 1, 0x40, 1, 0),
        (V_INVOKE_CORR_ANNOTATIONS, 4, 1, 7, 0x40, 0x33, 0x13),
        (V_INVOKE_COMPRESSED, 4, 1, 8, 0x02, 0x3c, 0),
    ];
    assert_eq!(expect.len(), ALL.len());
    for (hex_str, ty, ser, seq, flags, dlen, alen) in expect {
        let raw = bytes(hex_str);
        assert_eq!(detect_dialect(&raw), Some(Dialect::Pyro5));
        let m = decode_one(&raw);
        assert_eq!(m.msg_type, MessageType(ty));
        assert_eq!(m.serializer, SerializerId(ser));
        assert_eq!((m.seq, m.flags), (seq, Flags(flags)));
        assert_eq!(m.payload.len(), dlen);
        assert_eq!(m.annotations.encoded_len(), alen as u64);
        assert_eq!(m.reserved, 0);
        let h = m.header().unwrap();
        assert_eq!(
            h,
            Header::parse(raw[..HEADER_LEN].try_into().unwrap()).unwrap()
        );
        // Re-encoded byte for byte.
        assert_eq!(m.to_bytes().unwrap(), raw);
        // Fed one byte at a time, the decoder gives the same message.
        let mut d = MessageDecoder::new(MessageLimits::default());
        let mut buf = BytesMut::new();
        let mut got = None;
        for (i, b) in raw.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let r = d.decode(&mut buf).unwrap();
            assert_eq!(r.is_some(), i == raw.len() - 1);
            got = got.or(r);
        }
        assert_eq!(got.unwrap(), m);
    }
}

#[test]
fn captured_message_contents() {
    let m = decode_one(&bytes(C1_STREAM_RESULT));
    assert_eq!(
        m.annotations.get(AnnotationId::STRM).unwrap().as_ref(),
        b"ce685868-2f5b-4871-8ab6-706fa895fe6a"
    );
    assert!(m
        .flags
        .contains(Flags::EXCEPTION.union(Flags::ITEMSTREAMRESULT)));
    assert!(text(&m.payload).contains("'Pyro5.errors.ProtocolError'"));

    let m = decode_one(&bytes(V_INVOKE_CORR_ANNOTATIONS));
    let ids: Vec<_> = m
        .annotations
        .iter()
        .map(|(k, v)| (k.0, v.to_vec()))
        .collect();
    assert_eq!(ids, vec![(*b"ABCD", vec![1, 2, 3]), (*b"XY12", vec![])]);
    assert_eq!(
        m.correlation(),
        Some([
            0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55,
            0x55, 0x55
        ])
    );
    assert_eq!(
        text(&m.payload),
        "# serpent utf-8 python3.2\n('obj','echo',('hi',),{})"
    );

    let m = decode_one(&bytes(V_INVOKE_COMPRESSED));
    assert!(m.flags.contains(Flags::COMPRESSED));
    assert_eq!(
        &m.payload[..2],
        &[0x78, 0x5e],
        "a zlib stream, left to the driver"
    );

    let m = decode_one(&bytes(C1_INVOKE));
    assert_eq!(m.correlation(), None);
    assert_eq!(
        text(&m.payload),
        "# serpent utf-8 python3.2\n('test.calc','add',(1,2),{})"
    );
}

/// Every message of a captured conversation back to back, in one buffer: the decoder
/// splits them at every possible split point of the stream.
#[test]
fn captured_stream_at_every_split() {
    let stream: Vec<u8> = [C1_CONNECT, C1_INVOKE, C1_PING, V_INVOKE_CORR_ANNOTATIONS]
        .iter()
        .flat_map(|h| hex::decode(h).unwrap())
        .collect();
    let whole: Vec<Message> = {
        let mut d = MessageDecoder::default();
        let mut buf = BytesMut::from(&stream[..]);
        std::iter::from_fn(|| d.decode(&mut buf).unwrap()).collect()
    };
    assert_eq!(whole.len(), 4);
    for split in 0..=stream.len() {
        let mut d = MessageDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            buf.extend_from_slice(part);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, whole, "split at {split}");
    }
}

// ---------------------------------------------------------------------------------------
// The server session replays the daemon's side of the captured conversations.
// ---------------------------------------------------------------------------------------

fn server(accepted: &[SerializerId], now: Instant) -> ServerSession {
    ServerSession::new(ServerConfig::new(accepted.to_vec()), now).unwrap()
}

fn all_out(s: &mut ServerSession) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(b) = s.poll_transmit() {
        v.extend_from_slice(&b);
    }
    v
}

/// Drives a server with a captured client connection; the session's answers, given the
/// daemon's payloads, are the daemon's bytes up to its random correlation id.
fn replay_server(ser: SerializerId, connect: &str, connectok: &str, invoke: &str, result: &str) {
    let now = Instant::now();
    let mut s = server(&SerializerId::ALL, now);
    let raw_connect = bytes(connect);
    s.handle_input(&raw_connect, now).unwrap();
    let Some(ServerEvent::Connect(c)) = s.poll_event() else {
        panic!("no connect")
    };
    assert_eq!((c.seq, c.serializer, c.correlation_id), (0, ser, None));
    assert_eq!(c.payload, decode_one(&raw_connect).payload);
    assert!(!s.wants_input());
    assert!(s.poll_transmit().is_none());

    let ok = decode_one(&bytes(connectok));
    s.accept(Reply::new(ok.payload), now).unwrap();
    assert_eq!(all_out(&mut s), without_corr(&bytes(connectok)));
    assert!(s.is_connected() && s.wants_input());

    s.handle_input(&bytes(invoke), now).unwrap();
    let Some(ServerEvent::Invoke(call)) = s.poll_event() else {
        panic!("no invoke")
    };
    assert_eq!((call.seq, call.serializer), (1, ser));
    assert!(!call.is_oneway() && !call.is_batch() && !call.is_compressed());
    assert_eq!(call.payload, decode_one(&bytes(invoke)).payload);
    let res = decode_one(&bytes(result));
    s.reply(1, Reply::new(res.payload), now).unwrap();
    assert_eq!(all_out(&mut s), without_corr(&bytes(result)));
    assert!(s.poll_event().is_none());
}

#[test]
fn server_replays_the_captured_serpent_json_and_msgpack_connections() {
    replay_server(
        SerializerId::SERPENT,
        C1_CONNECT,
        C1_CONNECTOK,
        C1_INVOKE,
        C1_RESULT,
    );
    replay_server(
        SerializerId::JSON,
        C2_CONNECT,
        C2_CONNECTOK,
        C2_INVOKE,
        C2_RESULT,
    );
    replay_server(
        SerializerId::MSGPACK,
        C3_CONNECT,
        C3_CONNECTOK,
        C3_INVOKE,
        C3_RESULT,
    );
}

/// Connected server over conn1's handshake, events drained.
fn connected_server(accepted: &[SerializerId], now: Instant) -> ServerSession {
    let mut s = server(accepted, now);
    s.handle_input(&bytes(C1_CONNECT), now).unwrap();
    assert!(matches!(s.poll_event(), Some(ServerEvent::Connect(_))));
    s.accept(Reply::new(decode_one(&bytes(C1_CONNECTOK)).payload), now)
        .unwrap();
    all_out(&mut s);
    s
}

fn serpent_invoke(seq: u16, flags: Flags, call: &str) -> Vec<u8> {
    let mut m = Message::new(
        MessageType::INVOKE,
        SerializerId::SERPENT,
        seq,
        Bytes::from(format!("# serpent utf-8 python3.2\n{call}")),
    );
    m.flags = flags;
    m.to_bytes().unwrap().to_vec()
}

#[test]
fn server_replays_the_captured_stream_result_and_ping() {
    let now = Instant::now();
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    s.handle_input(
        &serpent_invoke(8, Flags::EMPTY, "('test.calc','gen',(2,),{})"),
        now,
    )
    .unwrap();
    let Some(ServerEvent::Invoke(call)) = s.poll_event() else {
        panic!()
    };
    let captured = decode_one(&bytes(C1_STREAM_RESULT));
    s.reply(
        call.seq,
        Reply::stream("ce685868-2f5b-4871-8ab6-706fa895fe6a", captured.payload),
        now,
    )
    .unwrap();
    assert_eq!(all_out(&mut s), without_corr(&bytes(C1_STREAM_RESULT)));

    s.handle_input(&bytes(C1_PING), now).unwrap();
    assert_eq!(
        s.poll_event(),
        Some(ServerEvent::Ping {
            seq: 0,
            serializer: SerializerId::PING
        })
    );
    assert_eq!(all_out(&mut s), without_corr(&bytes(C1_PONG)));
}

// ---------------------------------------------------------------------------------------
// The client session replays the proxy's side: its bytes are the proxy's, exactly.
// ---------------------------------------------------------------------------------------

fn all_client_out(c: &mut ClientSession) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(b) = c.poll_transmit() {
        v.extend_from_slice(&b);
    }
    v
}

fn replay_client(ser: SerializerId, connect: &str, connectok: &str, invoke: &str, result: &str) {
    let now = Instant::now();
    let mut c = ClientSession::new(ClientConfig::new(ser));
    c.connect(decode_one(&bytes(connect)).payload, now).unwrap();
    assert_eq!(all_client_out(&mut c), bytes(connect));
    // The daemon's answers with their random correlation ids are tolerated.
    c.handle_input(&bytes(connectok), now).unwrap();
    let Some(ClientEvent::Connected(ok)) = c.poll_event() else {
        panic!()
    };
    assert_eq!(ok.payload, decode_one(&bytes(connectok)).payload);
    let seq = c
        .invoke(Request::new(decode_one(&bytes(invoke)).payload), now)
        .unwrap();
    assert_eq!(seq, 1);
    assert_eq!(all_client_out(&mut c), bytes(invoke));
    assert!(
        c.invoke(Request::new(&b"x"[..]), now).is_err(),
        "one at a time"
    );
    c.handle_input(&bytes(result), now).unwrap();
    let Some(ClientEvent::Result(r)) = c.poll_event() else {
        panic!()
    };
    assert_eq!((r.seq, r.serializer), (1, ser));
    assert!(!r.is_exception());
    assert_eq!(r.payload, decode_one(&bytes(result)).payload);
}

#[test]
fn client_replays_the_captured_connections() {
    replay_client(
        SerializerId::SERPENT,
        C1_CONNECT,
        C1_CONNECTOK,
        C1_INVOKE,
        C1_RESULT,
    );
    replay_client(
        SerializerId::JSON,
        C2_CONNECT,
        C2_CONNECTOK,
        C2_INVOKE,
        C2_RESULT,
    );
    replay_client(
        SerializerId::MSGPACK,
        C3_CONNECT,
        C3_CONNECTOK,
        C3_INVOKE,
        C3_RESULT,
    );

    // PING: the proxy's bytes, and the daemon's pong.
    let now = Instant::now();
    let mut c = ClientSession::new(ClientConfig::new(SerializerId::SERPENT));
    c.connect(decode_one(&bytes(C1_CONNECT)).payload, now)
        .unwrap();
    c.handle_input(&bytes(C1_CONNECTOK), now).unwrap();
    all_client_out(&mut c);
    c.poll_event();
    c.ping(now).unwrap();
    assert_eq!(all_client_out(&mut c), bytes(C1_PING));
    c.handle_input(&bytes(C1_PONG), now + Duration::from_millis(3))
        .unwrap();
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Pong {
            rtt: Duration::from_millis(3)
        })
    );
}

#[test]
fn client_builds_the_reference_vectors_with_correlation_annotations_and_compression() {
    let now = Instant::now();
    let mut config = ClientConfig::new(SerializerId::SERPENT);
    config.initial_seq = 6;
    let mut c = ClientSession::new(config);
    c.connect(&b"hs"[..], now).unwrap();
    all_client_out(&mut c);
    let mut ok = Message::new(
        MessageType::CONNECTOK,
        SerializerId::SERPENT,
        6,
        Bytes::new(),
    );
    ok.payload = Bytes::from_static(b"ok");
    c.handle_input(&ok.to_bytes().unwrap(), now).unwrap();
    assert!(matches!(c.poll_event(), Some(ClientEvent::Connected(_))));

    let v = decode_one(&bytes(V_INVOKE_CORR_ANNOTATIONS));
    let req = Request {
        payload: v.payload.clone(),
        correlation_id: v.correlation(),
        annotations: Annotations::new()
            .with(AnnotationId::new("ABCD").unwrap(), &[1u8, 2, 3][..])
            .with(AnnotationId::new("XY12").unwrap(), Bytes::new()),
        ..Request::default()
    };
    assert_eq!(c.invoke(req, now).unwrap(), 7);
    assert_eq!(all_client_out(&mut c), bytes(V_INVOKE_CORR_ANNOTATIONS));
    let mut result = Message::new(MessageType::RESULT, SerializerId::SERPENT, 7, Bytes::new());
    result.payload = Bytes::from_static(b"# serpent utf-8 python3.2\n'hi'");
    c.handle_input(&result.to_bytes().unwrap(), now).unwrap();
    assert!(matches!(c.poll_event(), Some(ClientEvent::Result(_))));

    let v = decode_one(&bytes(V_INVOKE_COMPRESSED));
    let req = Request {
        payload: v.payload.clone(),
        flags: Flags::COMPRESSED,
        ..Request::default()
    };
    assert_eq!(c.invoke(req, now).unwrap(), 8);
    assert_eq!(all_client_out(&mut c), bytes(V_INVOKE_COMPRESSED));
}

// ---------------------------------------------------------------------------------------
// The daemon's error paths (reference §2.13) and the one-request-at-a-time rule.
// ---------------------------------------------------------------------------------------

/// The marshal CONNECTFAIL a refused first message gets: its reason text.
fn connect_fail_reason(out: &[u8]) -> String {
    let m = decode_one(out);
    assert_eq!(m.msg_type, MessageType::CONNECTFAIL);
    assert_eq!(m.serializer, SerializerId::MARSHAL);
    assert_eq!(m.seq, 0);
    unmarshal_str(&m.payload).expect("a marshal string")
}

fn with_header_byte(hex_str: &str, at: usize, value: u8) -> Vec<u8> {
    let mut v = bytes(hex_str).to_vec();
    v[at] = value;
    v
}

#[test]
fn first_message_errors_get_a_marshal_connectfail_naming_the_problem() {
    let now = Instant::now();
    // (input, error kind, the daemon's own text the reason starts with)
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        // INVOKE before CONNECT
        (
            bytes(C1_INVOKE).to_vec(),
            "pyro_unexpected_message",
            "invalid msg type 4 received (expected: 1)",
        ),
        // PING before CONNECT
        (
            bytes(C1_PING).to_vec(),
            "pyro_unexpected_message",
            "invalid msg type 6 received (expected: 1)",
        ),
        // protocol version 501
        (
            with_header_byte(C1_CONNECT, 5, 0xF5),
            "pyro_unsupported_version",
            "invalid protocol version: 501",
        ),
        // wrong magic at the header's end
        (
            with_header_byte(C1_CONNECT, 39, 0xC6),
            "pyro_bad_magic",
            "invalid message or protocol version",
        ),
        // not PYRO at all
        (
            with_header_byte(C1_CONNECT, 3, b'X'),
            "pyro_bad_magic",
            "invalid message or protocol version",
        ),
        // an unknown message type
        (
            with_header_byte(C1_CONNECT, 6, 9),
            "pyro_unexpected_message",
            "invalid msg type 9 received (expected: 1)",
        ),
        // a chunk overrunning the annotation area
        (
            {
                let mut v = with_header_byte(C1_CONNECT, 19, 12);
                v.splice(40..40, *b"ABCD\x00\x00\x00\x09abcd");
                v
            },
            "malformed_body",
            "malformed Pyro5 annotations: annotation chunk length exceeds remaining data",
        ),
    ];
    for (input, kind, reason) in cases {
        let mut s = server(&SerializerId::ALL, now);
        let e = s.handle_input(&input, now).unwrap_err();
        assert_eq!(e.kind_name(), kind, "{e}");
        assert!(s.is_closed());
        let got = connect_fail_reason(&all_out(&mut s));
        assert!(
            got.starts_with(reason),
            "{got:?} does not start with {reason:?}"
        );
        assert_eq!(got, e.to_string());
        assert!(s.poll_event().is_none());
        // Closed: further input is refused.
        assert_eq!(s.handle_input(&input, now), Err(ProtocolError::Closed));
    }
}

#[test]
fn oversized_first_message_is_refused_from_its_header_alone() {
    let now = Instant::now();
    let mut config = ServerConfig::new(vec![SerializerId::SERPENT]);
    config.limits.max_message_len = 1000;
    let mut s = ServerSession::new(config, now).unwrap();
    let mut m = decode_one(&bytes(C1_CONNECT)).header().unwrap();
    m.data_len = 0xFFFF_FFF0;
    // Only the 40 header bytes: the limit is checked before any body arrives.
    let e = s.handle_input(&m.to_bytes(), now).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::PyroMessageTooLarge {
            len: 0xFFFF_FFF0,
            max: 1000
        }
    );
    let reason = connect_fail_reason(&all_out(&mut s));
    assert!(
        reason.starts_with("message too large (4294967280, max=1000)"),
        "{reason}"
    );

    // The annotation limit too, and both also before the 40th byte is a problem: with the
    // header incomplete the session just waits.
    let mut s = server(&[SerializerId::SERPENT], now);
    let mut h = m;
    h.data_len = 10;
    h.annotations_len = (16 << 10) + 1;
    let raw = h.to_bytes();
    s.handle_input(&raw[..39], now).unwrap();
    let e = s.handle_input(&raw[39..], now).unwrap_err();
    assert_eq!(e.kind_name(), "annotations_too_large");
}

#[test]
fn oversized_message_after_the_handshake_closes_without_a_reply() {
    let now = Instant::now();
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    let mut h = decode_one(&bytes(C1_INVOKE)).header().unwrap();
    h.data_len = u32::MAX;
    let e = s.handle_input(&h.to_bytes(), now).unwrap_err();
    assert_eq!(e.kind_name(), "pyro_message_too_large");
    assert!(s.is_closed());
    assert!(s.poll_transmit().is_none());
}

#[test]
fn refused_serializers() {
    let now = Instant::now();
    // CONNECT with serializer 99: a Pyro5 daemon closes silently, wirecall names the
    // accepted serializers in a marshal CONNECTFAIL.
    let mut s = server(&[SerializerId::SERPENT, SerializerId::MSGPACK], now);
    let e = s
        .handle_input(&with_header_byte(C1_CONNECT, 7, 99), now)
        .unwrap_err();
    assert_eq!(
        e,
        ProtocolError::PyroSerializerRefused {
            serializer: SerializerId(99),
            accepted: vec![SerializerId::SERPENT, SerializerId::MSGPACK]
        }
    );
    assert_eq!(
        connect_fail_reason(&all_out(&mut s)),
        "serializer unknown serializer 99 refused; this server accepts serpent (1), msgpack (4)"
    );

    // A known serializer the server does not accept (json).
    let mut s = ServerSession::new(
        ServerConfig::from_codecs(&[CodecId::SERPENT, CodecId::CBOR]),
        now,
    )
    .unwrap();
    assert_eq!(s.config().accepted, vec![SerializerId::SERPENT]);
    s.handle_input(&bytes(C2_CONNECT), now).unwrap_err();
    let reason = connect_fail_reason(&all_out(&mut s));
    assert!(
        reason.contains("json (3) refused") && reason.contains("serpent (1)"),
        "{reason}"
    );

    // An INVOKE in a refused serializer after the handshake: closed, nothing sent, as a
    // Pyro5 daemon does.
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    let e = s.handle_input(&bytes(C2_INVOKE), now).unwrap_err();
    assert_eq!(e.kind_name(), "pyro_serializer_refused");
    assert!(s.poll_transmit().is_none() && s.is_closed());

    // The serializer is chosen per message: a json INVOKE on a serpent handshake is served
    // in json when json is accepted.
    let mut s = connected_server(&[SerializerId::SERPENT, SerializerId::JSON], now);
    s.handle_input(&bytes(C2_INVOKE), now).unwrap();
    let Some(ServerEvent::Invoke(call)) = s.poll_event() else {
        panic!()
    };
    assert_eq!(call.serializer, SerializerId::JSON);
    s.reply(call.seq, Reply::new(&b"3"[..]), now).unwrap();
    assert_eq!(decode_one(&all_out(&mut s)).serializer, SerializerId::JSON);
}

#[test]
fn connect_echoes_seq_and_correlation_id() {
    let now = Instant::now();
    let mut s = server(&[SerializerId::SERPENT], now);
    let mut m = decode_one(&bytes(C1_CONNECT));
    m.seq = 77;
    m.flags = Flags::CORR_ID;
    m.correlation_id = [
        0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55,
        0x55,
    ];
    s.handle_input(&m.to_bytes().unwrap(), now).unwrap();
    let Some(ServerEvent::Connect(c)) = s.poll_event() else {
        panic!()
    };
    assert_eq!((c.seq, c.correlation_id), (77, Some(m.correlation_id)));
    s.accept(Reply::new(&b"x"[..]), now).unwrap();
    let ok = decode_one(&all_out(&mut s));
    assert_eq!((ok.msg_type, ok.seq), (MessageType::CONNECTOK, 77));
    assert_eq!(ok.flags, Flags::CORR_ID);
    assert_eq!(ok.correlation_id, m.correlation_id);
}

#[test]
fn driver_refusals() {
    let now = Instant::now();
    // Unknown object: CONNECTFAIL in the client's serializer, then closed.
    let mut s = server(&[SerializerId::SERPENT], now);
    s.handle_input(&bytes(C1_CONNECT), now).unwrap();
    s.poll_event();
    s.refuse(Reply::new(
        &b"# serpent utf-8 python3.2\n'unknown object'"[..],
    ))
    .unwrap();
    let m = decode_one(&all_out(&mut s));
    assert_eq!(
        (m.msg_type, m.serializer),
        (MessageType::CONNECTFAIL, SerializerId::SERPENT)
    );
    assert!(s.is_closed());
    assert_eq!(s.close_reason(), Some(&ProtocolError::Closed));
    // A marshal reason, whatever the client's serializer.
    let mut s = server(&[SerializerId::JSON], now);
    s.handle_input(&bytes(C2_CONNECT), now).unwrap();
    s.refuse_with_message("no free workers").unwrap();
    assert_eq!(connect_fail_reason(&all_out(&mut s)), "no free workers");
    assert!(s.is_closed());
    assert_eq!(
        s.accept(Reply::new(&b"x"[..]), now),
        Err(ProtocolError::Closed)
    );
    // Answering what is not pending.
    let mut s = server(&[SerializerId::JSON], now);
    assert_eq!(
        s.accept(Reply::new(&b"x"[..]), now)
            .unwrap_err()
            .kind_name(),
        "invalid_state"
    );
    assert_eq!(
        s.reply(0, Reply::new(&b"x"[..]), now)
            .unwrap_err()
            .kind_name(),
        "invalid_state"
    );
    assert!(s.poll_transmit().is_none());
}

#[test]
fn after_the_handshake_unexpected_types_close_silently() {
    let now = Instant::now();
    for (input, ty) in [
        (bytes(C1_CONNECTOK).to_vec(), 2u8),
        (bytes(C1_CONNECT).to_vec(), 1),
        (bytes(C1_RESULT).to_vec(), 5),
        (with_header_byte(C1_INVOKE, 6, 200), 200),
    ] {
        let mut s = connected_server(&[SerializerId::SERPENT], now);
        let e = s.handle_input(&input, now).unwrap_err();
        assert_eq!(
            e,
            ProtocolError::PyroUnexpectedMessage {
                msg_type: MessageType(ty),
                expected: "4, 6",
                state: "connected"
            }
        );
        assert!(s.poll_transmit().is_none() && s.is_closed());
    }
}

#[test]
fn ping_with_any_serializer_and_seq_is_echoed() {
    let now = Instant::now();
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    for (ser, seq) in [(0u8, 0u16), (42, 65535), (200, 7)] {
        let ping = Message::new(
            MessageType::PING,
            SerializerId(ser),
            seq,
            Bytes::from_static(b"ping"),
        );
        s.handle_input(&ping.to_bytes().unwrap(), now).unwrap();
        let pong = decode_one(&all_out(&mut s));
        assert_eq!(
            (pong.msg_type, pong.serializer, pong.seq, &pong.payload[..]),
            (MessageType::PING, SerializerId(ser), seq, &b"pong"[..])
        );
        assert_eq!(
            s.poll_event(),
            Some(ServerEvent::Ping {
                seq,
                serializer: SerializerId(ser)
            })
        );
    }
}

#[test]
fn sequence_numbers_are_echoed_whatever_their_order() {
    // A Pyro5 daemon does not check sequence numbers (a proxy's wrap at 65535 and does not
    // reset on reconnect): each reply carries its request's.
    let now = Instant::now();
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    for seq in [5u16, 3, 65535, 0, 0] {
        s.handle_input(&serpent_invoke(seq, Flags::EMPTY, "('o','m',(),{})"), now)
            .unwrap();
        let Some(ServerEvent::Invoke(call)) = s.poll_event() else {
            panic!()
        };
        assert_eq!(call.seq, seq);
        // A reply for another sequence number is refused locally.
        assert!(s
            .reply(seq.wrapping_add(1), Reply::new(&b"1"[..]), now)
            .is_err());
        s.reply(seq, Reply::new(&b"1"[..]), now).unwrap();
        assert_eq!(decode_one(&all_out(&mut s)).seq, seq);
    }
}

#[test]
fn oneway_gets_no_reply_and_does_not_block() {
    let now = Instant::now();
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    let mut input = serpent_invoke(7, Flags::ONEWAY, "('test.calc','fire',(1,),{})");
    input.extend(serpent_invoke(
        8,
        Flags::EMPTY,
        "('test.calc','add',(1,2),{})",
    ));
    s.handle_input(&input, now).unwrap();
    let Some(ServerEvent::Invoke(a)) = s.poll_event() else {
        panic!()
    };
    assert!(a.is_oneway());
    let Some(ServerEvent::Invoke(b)) = s.poll_event() else {
        panic!()
    };
    assert_eq!((b.seq, b.is_oneway()), (8, false));
    // No answer to the oneway call is possible; the other is answered.
    assert!(s.reply(7, Reply::new(&b"None"[..]), now).is_err());
    s.reply(8, Reply::new(&b"3"[..]), now).unwrap();
    let out = all_out(&mut s);
    assert_eq!(
        decode_one(&out).seq,
        8,
        "exactly one message: the RESULT of seq 8"
    );
}

#[test]
fn pipelined_requests_are_served_one_at_a_time_in_order() {
    let now = Instant::now();
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    let mut input = Vec::new();
    for seq in 1..=3 {
        input.extend(serpent_invoke(seq, Flags::EMPTY, "('o','m',(),{})"));
    }
    input.extend(bytes(C1_PING).to_vec());
    s.handle_input(&input, now).unwrap();
    for seq in 1..=3u16 {
        let Some(ServerEvent::Invoke(call)) = s.poll_event() else {
            panic!()
        };
        assert_eq!(call.seq, seq);
        assert!(s.poll_event().is_none(), "the next waits for this answer");
        assert!(!s.wants_input());
        assert_eq!(s.pending_seq(), Some(seq));
        s.reply(seq, Reply::new(&b"1"[..]), now).unwrap();
    }
    assert!(matches!(s.poll_event(), Some(ServerEvent::Ping { .. })));
    let out = all_out(&mut s);
    let mut buf = BytesMut::from(&out[..]);
    let mut d = MessageDecoder::default();
    let got: Vec<(MessageType, u16)> = std::iter::from_fn(|| d.decode(&mut buf).unwrap())
        .map(|m| (m.msg_type, m.seq))
        .collect();
    assert_eq!(
        got,
        [
            (MessageType::RESULT, 1),
            (MessageType::RESULT, 2),
            (MessageType::RESULT, 3),
            (MessageType::PING, 0)
        ]
    );

    // A client that keeps sending without waiting for its answers is cut off once more than
    // one whole message (and a header) waits.
    let mut config = ServerConfig::new(vec![SerializerId::SERPENT]);
    config.limits.max_message_len = 200;
    let mut s = ServerSession::new(config, now).unwrap();
    s.handle_input(&bytes(C1_CONNECT), now).unwrap();
    s.handle_input(&[0u8; 200 + 2 * HEADER_LEN], now).unwrap();
    assert_eq!(s.buffered_input(), 280);
    let e = s.handle_input(&[0u8; 1], now).unwrap_err();
    assert_eq!(e.kind_name(), "too_many_in_flight");
}

#[test]
fn reply_flags_batch_exception_and_stream_rules() {
    let now = Instant::now();
    let mut s = connected_server(&[SerializerId::SERPENT], now);
    s.handle_input(
        &serpent_invoke(
            12,
            Flags::BATCH,
            "('test.calc','<batch>',[('add',(1,1),{})],None)",
        ),
        now,
    )
    .unwrap();
    let Some(ServerEvent::Invoke(call)) = s.poll_event() else {
        panic!()
    };
    assert!(call.is_batch());
    for bad in [
        Reply {
            flags: Flags::ONEWAY,
            ..Reply::new(&b"x"[..])
        },
        Reply {
            flags: Flags::ITEMSTREAMRESULT,
            ..Reply::new(&b"x"[..])
        },
        Reply {
            flags: Flags::CORR_ID,
            ..Reply::new(&b"x"[..])
        },
    ] {
        assert_eq!(
            s.reply(12, bad, now).unwrap_err().kind_name(),
            "invalid_argument"
        );
        assert_eq!(s.pending_seq(), Some(12), "still awaiting its answer");
    }
    s.reply(12, Reply::batch(&b"[2]"[..]), now).unwrap();
    assert_eq!(decode_one(&all_out(&mut s)).flags, Flags::BATCH);
    s.handle_input(
        &serpent_invoke(13, Flags::EMPTY, "('test.calc','fail',(),{})"),
        now,
    )
    .unwrap();
    s.poll_event();
    s.reply(13, Reply::exception(&b"{}"[..]), now).unwrap();
    assert_eq!(decode_one(&all_out(&mut s)).flags, Flags::EXCEPTION);

    // A reply over the peer's limit is refused locally, and may be replaced.
    let mut config = ServerConfig::new(vec![SerializerId::SERPENT]);
    config.max_send_len = 10;
    let mut s = ServerSession::new(config, now).unwrap();
    s.handle_input(&bytes(C1_CONNECT), now).unwrap();
    assert_eq!(
        s.accept(Reply::new(vec![0u8; 11]), now)
            .unwrap_err()
            .kind_name(),
        "too_long"
    );
    s.accept(Reply::new(vec![0u8; 10]), now).unwrap();
}

// ---------------------------------------------------------------------------------------
// Timers.
// ---------------------------------------------------------------------------------------

#[test]
fn handshake_timeout_sends_connectfail_when_nothing_came() {
    let t0 = Instant::now();
    let mut s = server(&[SerializerId::SERPENT], t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    s.handle_timeout(t0 + Duration::from_secs(9)).unwrap();
    let e = s.handle_timeout(t0 + Duration::from_secs(10)).unwrap_err();
    assert_eq!(e, ProtocolError::HandshakeTimeout);
    assert_eq!(
        connect_fail_reason(&all_out(&mut s)),
        "handshake did not complete in time"
    );
    assert_eq!(s.poll_timeout(), None);

    // A CONNECT the driver does not answer in time: closed, nothing sent.
    let mut s = server(&[SerializerId::SERPENT], t0);
    s.handle_input(&bytes(C1_CONNECT), t0).unwrap();
    let e = s.handle_timeout(t0 + Duration::from_secs(10)).unwrap_err();
    assert_eq!(e, ProtocolError::HandshakeTimeout);
    assert!(s.poll_transmit().is_none());
}

#[test]
fn message_and_idle_timeouts() {
    let t0 = Instant::now();
    let s30 = Duration::from_secs(30);
    let s60 = Duration::from_secs(60);
    let mut s = connected_server(&[SerializerId::SERPENT], t0);
    assert_eq!(s.poll_timeout(), Some(t0 + s60), "idle from the handshake");

    // A PING does not restart the idle timer; an INVOKE holds it while it runs; the reply
    // restarts it.
    let t1 = t0 + Duration::from_secs(20);
    s.handle_input(&bytes(C1_PING), t1).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + s60));
    s.handle_input(&serpent_invoke(1, Flags::EMPTY, "('o','m',(),{})"), t1)
        .unwrap();
    assert_eq!(s.poll_timeout(), None, "busy: no idle timer");
    s.handle_timeout(t1 + s60 * 5).unwrap();
    let t2 = t1 + Duration::from_secs(100);
    s.reply(1, Reply::new(&b"1"[..]), t2).unwrap();
    assert_eq!(s.poll_timeout(), Some(t2 + s60));

    // Half a message: the message timer runs from when its first bytes came.
    let raw = serpent_invoke(2, Flags::EMPTY, "('o','m',(),{})");
    let t3 = t2 + Duration::from_secs(1);
    s.handle_input(&raw[..10], t3).unwrap();
    assert_eq!(s.poll_timeout(), Some(t3 + s30));
    s.handle_input(&raw[10..20], t3 + Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        s.poll_timeout(),
        Some(t3 + s30),
        "not restarted by more bytes"
    );
    assert_eq!(
        s.handle_timeout(t3 + s30).unwrap_err(),
        ProtocolError::FrameTimeout
    );

    let mut s = connected_server(&[SerializerId::SERPENT], t0);
    assert_eq!(
        s.handle_timeout(t0 + s60).unwrap_err(),
        ProtocolError::IdleTimeout
    );
    assert!(s.poll_transmit().is_none());
}

// ---------------------------------------------------------------------------------------
// Client errors.
// ---------------------------------------------------------------------------------------

fn connected_client(
    ser: SerializerId,
    config: Option<ClientConfig>,
    now: Instant,
) -> ClientSession {
    let mut c = ClientSession::new(config.unwrap_or_else(|| ClientConfig::new(ser)));
    c.connect(&b"hs"[..], now).unwrap();
    all_client_out(&mut c);
    let ok = Message::new(
        MessageType::CONNECTOK,
        ser,
        c.seq(),
        Bytes::from_static(b"ok"),
    );
    c.handle_input(&ok.to_bytes().unwrap(), now).unwrap();
    assert!(matches!(c.poll_event(), Some(ClientEvent::Connected(_))));
    c
}

#[test]
fn client_rejects_out_of_sync_results() {
    let now = Instant::now();
    let mut c = connected_client(SerializerId::SERPENT, None, now);
    c.invoke(Request::new(&b"call"[..]), now).unwrap();
    let wrong_seq = Message::new(MessageType::RESULT, SerializerId::SERPENT, 2, Bytes::new());
    assert_eq!(
        c.handle_input(&wrong_seq.to_bytes().unwrap(), now)
            .unwrap_err(),
        ProtocolError::PyroSequenceMismatch {
            got: 2,
            expected: 1
        }
    );
    assert!(c.is_closed());

    let mut c = connected_client(SerializerId::SERPENT, None, now);
    c.invoke(Request::new(&b"call"[..]), now).unwrap();
    let wrong_ser = Message::new(MessageType::RESULT, SerializerId::JSON, 1, Bytes::new());
    assert_eq!(
        c.handle_input(&wrong_ser.to_bytes().unwrap(), now)
            .unwrap_err()
            .kind_name(),
        "pyro_serializer_mismatch"
    );

    // A message nobody asked for.
    let mut c = connected_client(SerializerId::SERPENT, None, now);
    let e = c.handle_input(&bytes(C1_RESULT), now).unwrap_err();
    assert_eq!(e.kind_name(), "pyro_unexpected_message");
}

#[test]
fn client_connectfail_reports_the_reason() {
    let now = Instant::now();
    // What a Pyro5 daemon sends for an INVOKE before CONNECT (reference §2.1).
    let mut fail = Message::new(
        MessageType::CONNECTFAIL,
        SerializerId::MARSHAL,
        0,
        Bytes::from(
            [
                &[0xfa, 0x29][..],
                b"invalid msg type 4 received (expected: 1)",
            ]
            .concat(),
        ),
    );
    fail.flags = Flags::CORR_ID;
    let mut c = ClientSession::new(ClientConfig::new(SerializerId::SERPENT));
    c.connect(&b"hs"[..], now).unwrap();
    let e = c.handle_input(&fail.to_bytes().unwrap(), now).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::PyroConnectFailed {
            reason: "invalid msg type 4 received (expected: 1)".into()
        }
    );
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::ConnectFailed(_))
    ));
    assert!(c.is_closed());
}

#[test]
fn client_timeouts_and_eof() {
    let t0 = Instant::now();
    let mut c = ClientSession::new(ClientConfig::new(SerializerId::SERPENT));
    assert_eq!(c.poll_timeout(), None);
    c.connect(&b"hs"[..], t0).unwrap();
    assert_eq!(
        c.handle_timeout(t0 + Duration::from_secs(10)).unwrap_err(),
        ProtocolError::HandshakeTimeout
    );

    let mut config = ClientConfig::new(SerializerId::SERPENT);
    config.call_timeout = Some(Duration::from_secs(2));
    let mut c = connected_client(SerializerId::SERPENT, Some(config.clone()), t0);
    assert_eq!(c.poll_timeout(), None);
    let seq = c.invoke(Request::new(&b"x"[..]), t0).unwrap();
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    c.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(
        c.handle_timeout(t0 + Duration::from_secs(2)).unwrap_err(),
        ProtocolError::DeadlineExceeded {
            request_id: wirecall_protocol::RequestId(u64::from(seq))
        }
    );

    let mut c = connected_client(SerializerId::SERPENT, Some(config), t0);
    c.ping(t0).unwrap();
    assert!(c.ping(t0).is_err(), "one at a time");
    assert_eq!(
        c.handle_timeout(t0 + Duration::from_secs(2)).unwrap_err(),
        ProtocolError::PingTimeout
    );

    // The connection ends while a call waits.
    let mut c = connected_client(SerializerId::SERPENT, None, t0);
    c.invoke(Request::new(&b"x"[..]), t0).unwrap();
    assert_eq!(c.handle_eof().unwrap_err().kind_name(), "truncated");
    // ... or idle.
    let mut c = connected_client(SerializerId::SERPENT, None, t0);
    c.handle_eof().unwrap();
    assert!(c.is_closed());
}

// ---------------------------------------------------------------------------------------
// Client session <-> server session.
// ---------------------------------------------------------------------------------------

fn pump(c: &mut ClientSession, s: &mut ServerSession, now: Instant) {
    loop {
        let mut moved = false;
        while let Some(b) = c.poll_transmit() {
            s.handle_input(&b, now).unwrap();
            moved = true;
        }
        while let Some(b) = s.poll_transmit() {
            c.handle_input(&b, now).unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn client_and_server_sessions_talk_across_the_sequence_wrap() {
    let now = Instant::now();
    let mut config = ClientConfig::new(SerializerId::MSGPACK);
    config.initial_seq = 65533;
    let mut c = ClientSession::new(config);
    let mut s = server(&[SerializerId::MSGPACK, SerializerId::JSON], now);
    c.connect(&b"\x82hs"[..], now).unwrap();
    pump(&mut c, &mut s, now);
    let Some(ServerEvent::Connect(conn)) = s.poll_event() else {
        panic!()
    };
    assert_eq!(conn.seq, 65533);
    s.accept(Reply::new(&b"meta"[..]), now).unwrap();
    pump(&mut c, &mut s, now);
    assert!(matches!(c.poll_event(), Some(ClientEvent::Connected(_))));

    let mut seqs = Vec::new();
    for i in 0..6u8 {
        let oneway = i == 2;
        let req = if oneway {
            Request::oneway(vec![i])
        } else {
            Request {
                serializer: (i == 4).then_some(SerializerId::JSON),
                ..Request::new(vec![i])
            }
        };
        let seq = c.invoke(req, now).unwrap();
        seqs.push(seq);
        pump(&mut c, &mut s, now);
        let Some(ServerEvent::Invoke(call)) = s.poll_event() else {
            panic!()
        };
        assert_eq!(
            (call.seq, call.is_oneway(), &call.payload[..]),
            (seq, oneway, &[i][..])
        );
        if oneway {
            assert!(!c.is_busy());
            continue;
        }
        let reply = if i == 3 {
            Reply::exception(vec![i, i])
        } else {
            Reply::new(vec![i, i])
        };
        s.reply(call.seq, reply, now).unwrap();
        pump(&mut c, &mut s, now);
        let Some(ClientEvent::Result(r)) = c.poll_event() else {
            panic!()
        };
        assert_eq!((r.seq, &r.payload[..]), (seq, &[i, i][..]));
        assert_eq!(r.is_exception(), i == 3);
        assert_eq!(
            r.serializer,
            if i == 4 {
                SerializerId::JSON
            } else {
                SerializerId::MSGPACK
            }
        );
    }
    assert_eq!(seqs, [65534, 65535, 0, 1, 2, 3]);

    // A streamed result.
    let seq = c.invoke(Request::new(&b"gen"[..]), now).unwrap();
    pump(&mut c, &mut s, now);
    s.poll_event();
    s.reply(
        seq,
        Reply::stream("ce685868-2f5b-4871-8ab6-706fa895fe6a", &b"e"[..]),
        now,
    )
    .unwrap();
    pump(&mut c, &mut s, now);
    let Some(ClientEvent::Result(r)) = c.poll_event() else {
        panic!()
    };
    assert!(!r.is_exception());
    assert_eq!(
        r.stream_id().map(|b| b.as_ref()),
        Some(&b"ce685868-2f5b-4871-8ab6-706fa895fe6a"[..])
    );

    c.ping(now).unwrap();
    pump(&mut c, &mut s, now);
    assert!(matches!(c.poll_event(), Some(ClientEvent::Pong { .. })));
    assert!(matches!(s.poll_event(), Some(ServerEvent::Ping { .. })));
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

fn arb_message() -> impl Strategy<Value = Message> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        proptest::collection::vec(
            (
                any::<[u8; 4]>(),
                proptest::collection::vec(any::<u8>(), 0..20),
            ),
            0..4,
        ),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(ty, ser, flags, seq, corr, reserved, ann, payload)| {
            let mut annotations = Annotations::new();
            for (mut id, v) in ann {
                id.iter_mut().for_each(|b| *b &= 0x7f);
                annotations.push(AnnotationId(id), v);
            }
            Message {
                msg_type: MessageType(ty),
                serializer: SerializerId(ser),
                flags: Flags(flags),
                seq,
                correlation_id: corr,
                reserved,
                annotations,
                payload: Bytes::from(payload),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn messages_round_trip_at_any_split(msgs in proptest::collection::vec(arb_message(), 1..4), split in any::<prop::sample::Index>()) {
        let mut stream = BytesMut::new();
        for m in &msgs {
            m.encode(&mut stream).unwrap();
        }
        let stream = stream.freeze();
        let at = split.index(stream.len() + 1);
        let mut d = MessageDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for part in [&stream[..at], &stream[at..]] {
            buf.extend_from_slice(part);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert!(d.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn headers_round_trip(m in arb_message()) {
        let h = m.header().unwrap();
        prop_assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(data in proptest::collection::vec(any::<u8>(), 0..300), pyro_prefix in any::<bool>()) {
        let mut input = if pyro_prefix { b"PYRO\x01\xf6".to_vec() } else { Vec::new() };
        input.extend(data);
        let mut d = MessageDecoder::new(MessageLimits { max_message_len: 256, max_annotations_len: 64 });
        let mut buf = BytesMut::from(&input[..]);
        for _ in 0..8 {
            match d.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => {
                    // A failed decoder stays failed.
                    prop_assert!(d.decode(&mut buf).is_err());
                    break;
                }
            }
        }
    }

    /// A server session fed a valid CONNECT (or not) and then random bytes in random
    /// pieces, its driver answering whatever it is asked, never panics, and answers
    /// nothing after it closed.
    #[test]
    fn server_session_survives_random_input(
        connect_first in any::<bool>(),
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        invokes in proptest::collection::vec(arb_message(), 0..4),
    ) {
        let now = Instant::now();
        let mut s = ServerSession::new(ServerConfig::new(vec![SerializerId::SERPENT, SerializerId(7)]), now).unwrap();
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        if connect_first {
            inputs.push(bytes(C1_CONNECT).to_vec());
        }
        for (m, p) in invokes.iter().zip(pieces.iter().chain(std::iter::repeat(&Vec::new()))) {
            inputs.push(m.to_bytes().unwrap().to_vec());
            inputs.push(p.clone());
        }
        inputs.extend(pieces.iter().cloned());
        let mut t = now;
        for input in inputs {
            t += Duration::from_secs(7);
            if s.handle_input(&input, t).is_err() {
                prop_assert!(s.is_closed());
            }
            while let Some(ev) = s.poll_event() {
                let _ = match ev {
                    ServerEvent::Connect(_) => s.accept(Reply::new(&b"ok"[..]), t),
                    ServerEvent::Invoke(call) if !call.is_oneway() => {
                        s.reply(call.seq, Reply::new(&b"r"[..]), t)
                    }
                    _ => Ok(()),
                };
            }
            let _ = s.handle_timeout(t);
            s.poll_transmit();
            if s.is_closed() {
                prop_assert!(s.handle_input(b"PYRO", t).is_err());
                prop_assert!(s.poll_transmit().is_none());
            }
        }
    }
}

/// A server whose accepted set has no Pyro5 serializer at all still speaks the dialect
/// enough to refuse: every CONNECT gets a marshal CONNECTFAIL naming the empty set and the
/// config's hint (what the server does accept), and the session closes.
#[test]
fn no_serializer_accepted_refuses_every_connect_with_the_hint() {
    let now = Instant::now();
    let mut config = ServerConfig::new(Vec::new());
    config.refusal_hint = Some("this server speaks postcard only".to_string());
    let mut s = ServerSession::new(config, now).unwrap();
    let e = s.handle_input(&bytes(C1_CONNECT), now).unwrap_err();
    assert_eq!(
        e.kind_name(),
        ProtocolError::PyroSerializerRefused {
            serializer: SerializerId::SERPENT,
            accepted: Vec::new(),
        }
        .kind_name()
    );
    let reason = connect_fail_reason(&all_out(&mut s));
    assert!(reason.contains("postcard only"), "{reason}");
    assert!(s.is_closed());
    // Without a hint the reason is the error's alone.
    let mut s = server(&[], now);
    let _ = s.handle_input(&bytes(C1_CONNECT), now).unwrap_err();
    let reason = connect_fail_reason(&all_out(&mut s));
    assert!(!reason.contains("postcard"), "{reason}");
}
