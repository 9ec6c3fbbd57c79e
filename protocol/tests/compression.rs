//! Per-frame compression (SPEC §6.9) between a client and a server state machine wired
//! together in memory: negotiation, round trips of every compressed kind, and the frames a
//! receiver must refuse (not negotiated, inflating past the limit, lying or corrupt).

mod common;
use common::Pair;

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use wirecall_protocol::{
    Annotations, CallRef, CallRequest, ClientConfig, ClientConnection, ClientEvent, CodecId,
    Compression, CompressionId, ErrorCode, ExtensionTag, Extensions, Frame, FrameDecoder, Limits,
    Method, ProtocolError, ProviderId, Reply, RequestId, ServerConfig, ServerConnection,
    ServerEvent, StreamItem, Welcome, HEADER_LEN,
};

const COMPRESSED: u16 = 0x0004;

impl Pair {
    /// A pair after its handshake, with empty chunk records.
    fn connected(client: ClientConfig, server: ServerConfig) -> Pair {
        let mut p = Pair::new(client, server);
        p.handshake();
        p
    }

    /// Both sides with zstd at the default threshold.
    fn zstd() -> Pair {
        Pair::connected(client(Compression::zstd()), server(Compression::zstd()))
    }

    fn call(&mut self, args: Bytes, kwargs: Bytes) -> RequestId {
        let mut req = CallRequest::new(ProviderId(1), Method::new("svc_echo").unwrap(), args);
        req.kwargs = kwargs;
        self.client.call(req, self.now).unwrap()
    }
}

fn client(c: Compression) -> ClientConfig {
    let mut cfg = ClientConfig::new(vec![CodecId::JSON]);
    cfg.compression = c;
    cfg
}

fn server(c: Compression) -> ServerConfig {
    let mut cfg = ServerConfig::new(vec![CodecId::JSON]);
    cfg.compression = c;
    cfg
}

/// A compressible JSON-like payload of about `n` bytes.
fn json(n: usize) -> Bytes {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user{i}\",\"active\":true,\"tags\":[\"a\",\"b\"]}},"
        ));
        i += 1;
    }
    s.push_str("null]");
    Bytes::from(s)
}

/// Bytes that do not compress (a simple xorshift stream).
fn noise(n: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The flags of every frame in `chunks` (concatenated), by kind byte.
fn frame_flags(chunks: &[Bytes]) -> Vec<(u8, u16)> {
    let mut all = BytesMut::new();
    for c in chunks {
        all.extend_from_slice(c);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER_LEN <= all.len() {
        let h = &all[at..at + HEADER_LEN];
        let flags = u16::from_be_bytes([h[6], h[7]]);
        let len: usize = HEADER_LEN
            + usize::from(u16::from_be_bytes([h[20], h[21]]))
            + [24, 28, 32, 36]
                .iter()
                .map(|&o| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]) as usize)
                .sum::<usize>();
        out.push((h[5], flags));
        at += len;
    }
    assert_eq!(at, all.len(), "chunks end on a frame boundary");
    out
}

fn wire_len(chunks: &[Bytes]) -> usize {
    chunks.iter().map(Bytes::len).sum()
}

/// A compressed section: algorithm id, declared length, data.
fn section(alg: u8, declared: u32, data: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(&[alg]);
    b.extend_from_slice(&declared.to_be_bytes());
    b.extend_from_slice(data);
    b.freeze()
}

/// The bytes of a CALL (request id `id`) whose payload is `args`, with flag COMPRESSED set.
fn compressed_call(id: u64, args: Bytes) -> BytesMut {
    let call = CallRef {
        request_id: RequestId(id),
        provider: ProviderId(1),
        codec: CodecId::JSON,
        oneway: false,
        method: "svc_echo",
        annotations: &Annotations::new(),
        args: &args,
        kwargs: &[],
        attachment: &[],
    };
    let mut b = BytesMut::new();
    call.encode(&mut b).unwrap();
    let flags = u16::from_be_bytes([b[6], b[7]]) | COMPRESSED;
    b[6..8].copy_from_slice(&flags.to_be_bytes());
    b
}

/// Feeds raw bytes to the server; returns its error and the GOAWAY it sent.
fn server_rejects(p: &mut Pair, bytes: &[u8]) -> (ProtocolError, wirecall_protocol::GoAway) {
    let e = p.server.handle_input(bytes, p.now).unwrap_err();
    let mut out = BytesMut::new();
    p.server.take_transmit(&mut out);
    let mut d = FrameDecoder::default();
    let Some(Frame::GoAway(g)) = d.decode(&mut out).unwrap() else {
        panic!("no GOAWAY after {e}")
    };
    assert!(p.server.is_closed());
    (e, g)
}

// ---- negotiation ----------------------------------------------------------------------

#[test]
fn negotiation_both_on_agrees_on_zstd_and_tells_both_sessions() {
    let now = Instant::now();
    let mut c = ClientConnection::new(client(Compression::zstd()), now).unwrap();
    let mut s = ServerConnection::new(server(Compression::zstd()), now).unwrap();
    while let Some(b) = c.poll_transmit() {
        s.handle_input(&b, now).unwrap();
    }
    while let Some(b) = s.poll_transmit() {
        c.handle_input(&b, now).unwrap();
    }
    let Some(ClientEvent::Connected(cs)) = c.poll_event() else {
        panic!()
    };
    let Some(ServerEvent::Connected(ss)) = s.poll_event() else {
        panic!()
    };
    assert_eq!(cs.compression(), vec![CompressionId::ZSTD]);
    assert_eq!(ss.compression(), vec![CompressionId::ZSTD]);
    assert_eq!(
        cs.extensions.get(ExtensionTag::COMPRESSION).unwrap(),
        &[1u8][..]
    );
}

#[test]
fn negotiation_with_one_side_off_leaves_compression_off() {
    for (c, s) in [
        (Compression::zstd(), Compression::off()),
        (Compression::off(), Compression::zstd()),
        (Compression::off(), Compression::off()),
    ] {
        let offered = !c.is_off();
        let mut p = Pair::connected(client(c), server(s));
        let cs = p.client.session().unwrap().clone();
        let ss = p.server.session().unwrap().clone();
        assert!(cs.compression().is_empty());
        assert!(ss.compression().is_empty());
        assert!(cs.extensions.get(ExtensionTag::COMPRESSION).is_none());
        assert_eq!(
            ss.offered_extensions
                .get(ExtensionTag::COMPRESSION)
                .is_some(),
            offered
        );
        // A large call and reply still work, uncompressed.
        let big = json(64 << 10);
        let id = p.call(big.clone(), Bytes::new());
        p.drive();
        assert_eq!(p.server_call().args, big);
        p.server
            .reply(Reply {
                request_id: id,
                codec: CodecId::JSON,
                stream: false,
                annotations: Annotations::new(),
                result: big.clone(),
                attachment: Bytes::new(),
            })
            .unwrap();
        p.drive();
        let Some(ClientEvent::Reply(r)) = p.client.poll_event() else {
            panic!()
        };
        assert_eq!(r.result, big);
        assert!(frame_flags(&p.c2s)
            .iter()
            .chain(frame_flags(&p.s2c).iter())
            .all(|(_, f)| f & COMPRESSED == 0));
        assert!(wire_len(&p.c2s) > big.len());
    }
}

#[test]
fn the_answer_lists_the_clients_algorithms_the_server_accepts_in_the_clients_order() {
    // An unknown algorithm id (offered raw) is left out; the known one is kept.
    let mut c = ClientConfig::new(vec![CodecId::JSON]);
    c.extensions = Extensions::new()
        .with(ExtensionTag::COMPRESSION, &[9u8, 1][..])
        .unwrap();
    let p = Pair::connected(c, server(Compression::zstd()));
    assert_eq!(
        p.client.session().unwrap().compression(),
        vec![CompressionId::ZSTD]
    );
    // Nothing in common: the tag is left out.
    let mut c = ClientConfig::new(vec![CodecId::JSON]);
    c.extensions = Extensions::new()
        .with(ExtensionTag::COMPRESSION, &[9u8][..])
        .unwrap();
    let p = Pair::connected(c, server(Compression::zstd()));
    assert!(p.client.session().unwrap().compression().is_empty());
}

#[test]
fn a_client_rejects_a_compression_answer_it_did_not_offer() {
    for (offer, answer) in [
        (Compression::zstd(), vec![7u8]),
        (Compression::zstd(), vec![]),
    ] {
        let mut c = ClientConnection::new(client(offer), Instant::now()).unwrap();
        while c.poll_transmit().is_some() {}
        let mut b = BytesMut::new();
        Frame::Welcome(Welcome {
            version: 1,
            codec: CodecId::JSON,
            accepted: vec![CodecId::JSON],
            limits: Limits::default(),
            extensions: Extensions::new()
                .with(ExtensionTag::COMPRESSION, answer)
                .unwrap(),
        })
        .encode(&mut b)
        .unwrap();
        let e = c.handle_input(&b, Instant::now()).unwrap_err();
        assert_eq!(e.kind_name(), "malformed_body", "{e}");
        assert!(e.to_string().contains("compression answer"), "{e}");
    }
}

#[test]
fn bad_settings_are_refused_when_the_connection_is_made() {
    let mut bad = Compression::zstd();
    bad.algorithms.push(CompressionId(9));
    let e = ClientConnection::new(client(bad), Instant::now()).unwrap_err();
    assert!(e.to_string().contains("knows zstd"), "{e}");
    let mut twice = Compression::zstd();
    twice.algorithms.push(CompressionId::ZSTD);
    assert!(ServerConnection::new(server(twice), Instant::now()).is_err());
}

// ---- round trips ------------------------------------------------------------------------

#[test]
fn large_calls_replies_and_stream_items_travel_compressed_and_arrive_intact() {
    let mut p = Pair::zstd();
    let args = json(256 << 10);
    let kwargs = json(8 << 10);
    let id = p.call(args.clone(), kwargs.clone());
    p.drive();
    let c = p.server_call();
    assert_eq!((c.args.clone(), c.kwargs.clone()), (args.clone(), kwargs));
    assert_eq!(frame_flags(&p.c2s), vec![(4, COMPRESSED)]);
    let sent = wire_len(&p.c2s);
    assert!(
        sent * 5 < args.len(),
        "{sent} bytes on the wire for {} of JSON",
        args.len()
    );

    // A streamed answer: the REPLY (STREAM flag kept), items, the end.
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::JSON,
            stream: true,
            annotations: Annotations::new(),
            result: args.clone(),
            attachment: Bytes::from_static(b"raw attachment, never compressed"),
        })
        .unwrap();
    p.server
        .stream_item(
            StreamItem {
                request_id: id,
                codec: CodecId::JSON,
                annotations: Annotations::new(),
                item: json(16 << 10),
                attachment: Bytes::new(),
            },
            p.now,
        )
        .unwrap();
    p.server.stream_end(id).unwrap();
    p.drive();
    assert_eq!(
        frame_flags(&p.s2c),
        vec![(5, 0x0002 | COMPRESSED), (8, COMPRESSED), (9, 0)]
    );
    let Some(ClientEvent::Reply(r)) = p.client.poll_event() else {
        panic!("{:?}", p.client_err)
    };
    assert!(r.stream);
    assert_eq!(r.result, args);
    assert_eq!(&r.attachment[..], b"raw attachment, never compressed");
    let down: Vec<u8> = p.s2c.iter().flat_map(|b| b.to_vec()).collect();
    assert!(
        down.windows(31)
            .any(|w| w == &b"raw attachment, never compressed"[..31]),
        "the attachment travels as it is"
    );
    let Some(ClientEvent::StreamItem(i)) = p.client.poll_event() else {
        panic!()
    };
    assert_eq!(i.item, json(16 << 10));
    assert_eq!(p.client.poll_event(), Some(ClientEvent::StreamEnd(id)));
    assert!(p.client_err.is_none() && p.server_err.is_none());
}

#[test]
fn the_borrowed_call_and_reply_paths_compress_too() {
    let mut p = Pair::zstd();
    let args = json(32 << 10);
    let annotations = Annotations::new();
    let id = p
        .client
        .call_ref(
            CallRef {
                request_id: RequestId(0),
                provider: ProviderId(1),
                codec: CodecId::NONE,
                oneway: false,
                method: "svc_echo",
                annotations: &annotations,
                args: &args,
                kwargs: &[],
                attachment: &[],
            },
            p.now,
        )
        .unwrap();
    p.drive();
    assert_eq!(p.server_call().args, args);
    assert_eq!(frame_flags(&p.c2s), vec![(4, COMPRESSED)]);
    p.server.reply_slice(id, CodecId::JSON, &args).unwrap();
    p.drive();
    assert_eq!(frame_flags(&p.s2c), vec![(5, COMPRESSED)]);
    let Some(ClientEvent::Reply(r)) = p.client.poll_event() else {
        panic!("{:?}", p.client_err)
    };
    assert_eq!(r.result, args);
    assert!(wire_len(&p.s2c) * 4 < args.len());
}

#[test]
fn small_and_incompressible_frames_travel_as_they_are() {
    let mut p = Pair::zstd();
    // Below the 4 KiB threshold.
    let small = json(4000);
    p.call(small.clone(), Bytes::new());
    // Above it, but random: compressing would not shrink it.
    let random = noise(64 << 10);
    p.call(random.clone(), Bytes::new());
    p.drive();
    assert_eq!(p.server_call().args, small);
    assert_eq!(p.server_call().args, random);
    assert_eq!(frame_flags(&p.c2s), vec![(4, 0), (4, 0)]);
}

#[test]
fn the_threshold_and_a_receive_only_side_are_the_senders_choice() {
    // The client compresses from 100 bytes; the server accepts but never compresses.
    let mut c = Compression::zstd();
    c.threshold = 100;
    let mut s = Compression::zstd();
    s.threshold = usize::MAX;
    let mut p = Pair::connected(client(c), server(s));
    let args = json(1000);
    let id = p.call(args.clone(), Bytes::new());
    p.drive();
    assert_eq!(p.server_call().args, args);
    assert_eq!(frame_flags(&p.c2s), vec![(4, COMPRESSED)]);
    p.server
        .reply(Reply {
            request_id: id,
            codec: CodecId::JSON,
            stream: false,
            annotations: Annotations::new(),
            result: json(64 << 10),
            attachment: Bytes::new(),
        })
        .unwrap();
    p.drive();
    assert_eq!(frame_flags(&p.s2c), vec![(5, 0)]);
}

#[test]
fn the_peers_frame_limit_applies_to_the_uncompressed_call() {
    let mut s = server(Compression::zstd());
    s.limits.max_frame_len = 64 << 10;
    let mut p = Pair::connected(client(Compression::zstd()), s);
    // Compresses to a few KiB, but is 128 KiB once inflated: refused locally, nothing sent.
    let mut req = CallRequest::new(
        ProviderId(1),
        Method::new("svc_echo").unwrap(),
        json(128 << 10),
    );
    req.oneway = false;
    let e = p.client.call(req, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "too_long", "{e}");
    assert!(p.client.poll_transmit().is_none());
    assert!(!p.client.is_closed());
}

// ---- what a receiver refuses ---------------------------------------------------------------

#[test]
fn a_frame_inflating_past_the_limit_is_refused_before_decompressing() {
    let mut s = server(Compression::zstd());
    s.limits.max_frame_len = 1 << 20;
    let mut p = Pair::connected(client(Compression::zstd()), s);
    // 64 MiB of zeros: a few KiB on the wire, declared honestly.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    assert!(bomb.len() < 64 << 10);
    let frame = compressed_call(1, section(1, 64 << 20, &bomb));
    let (e, g) = server_rejects(&mut p, &frame);
    assert_eq!(e.kind_name(), "decompressed_too_large", "{e}");
    assert_eq!(g.code, ErrorCode::LIMIT_EXCEEDED);
    assert!(g.message.contains("max_frame_len"), "{}", g.message);
    assert!(p.server.poll_event().is_none(), "nothing dispatched");
}

#[test]
fn a_frame_inflating_past_its_declared_size_is_stopped_there() {
    // A frame limit below the bomb's zstd window (8 MiB): told apart all the same.
    let mut s = server(Compression::zstd());
    s.limits.max_frame_len = 1 << 20;
    let mut p = Pair::connected(client(Compression::zstd()), s);
    // Declares 1 KiB, inflates to 8 MiB: decompression stops at 1 KiB.
    let bomb = zstd::bulk::compress(&vec![0u8; 8 << 20], 19).unwrap();
    let frame = compressed_call(1, section(1, 1024, &bomb));
    let (e, g) = server_rejects(&mut p, &frame);
    assert_eq!(e.kind_name(), "inflates_past_declared", "{e}");
    assert_eq!(g.code, ErrorCode::LIMIT_EXCEEDED);
    assert!(g.message.contains("declared size of 1024"), "{}", g.message);
}

#[test]
fn a_compressed_frame_without_compression_in_force_is_bad_flags() {
    let mut p = Pair::connected(client(Compression::zstd()), server(Compression::off()));
    let data = json(8192);
    let packed = zstd::bulk::compress(&data, 3).unwrap();
    let frame = compressed_call(1, section(1, data.len() as u32, &packed));
    let (e, g) = server_rejects(&mut p, &frame[..HEADER_LEN]);
    // Refused from the header alone, before the body arrives.
    assert_eq!(e.kind_name(), "bad_flags", "{e}");
    assert_eq!(g.code, ErrorCode::PROTOCOL_ERROR);
    assert!(g.message.contains("not in force"), "{}", g.message);

    // The same on the client side: a REPLY flagged COMPRESSED.
    let mut p = Pair::connected(client(Compression::off()), server(Compression::off()));
    let id = p.call(Bytes::from_static(b"[]"), Bytes::new());
    p.drive();
    let mut b = BytesMut::new();
    Frame::Reply(Reply {
        request_id: id,
        codec: CodecId::JSON,
        stream: false,
        annotations: Annotations::new(),
        result: Bytes::from_static(b"1"),
        attachment: Bytes::new(),
    })
    .encode(&mut b)
    .unwrap();
    b[7] |= COMPRESSED as u8;
    let e = p.client.handle_input(&b, p.now).unwrap_err();
    assert_eq!(e.kind_name(), "bad_flags", "{e}");
}

#[test]
fn corrupt_short_or_foreign_compressed_sections_are_protocol_errors() {
    let data = json(8192);
    let packed = zstd::bulk::compress(&data, 3).unwrap();
    let mut garbled = packed.clone();
    let mid = garbled.len() / 2;
    for b in &mut garbled[mid..] {
        *b ^= 0x5a;
    }
    let cases: Vec<(Bytes, &str)> = vec![
        (section(1, data.len() as u32, &garbled), "not valid zstd"),
        (Bytes::from_static(&[1, 0, 0]), "5-byte prefix"),
        (section(1, data.len() as u32 + 10, &packed), "not the"),
        (section(2, data.len() as u32, &packed), "not in force"),
    ];
    for (args, what) in cases {
        let mut p = Pair::zstd();
        let (e, g) = server_rejects(&mut p, &compressed_call(1, args));
        assert_eq!(e.kind_name(), "bad_compressed_data", "{e}");
        assert!(e.to_string().contains(what), "{e}");
        assert_eq!(g.code, ErrorCode::PROTOCOL_ERROR);
    }
}

#[test]
fn a_hand_made_compressed_call_is_inflated_for_the_server() {
    // The receiver's rule, independent of this crate's sender: any valid zstd frame with
    // the right prefix is accepted, with a split of the input anywhere.
    let mut p = Pair::zstd();
    let data = json(10_000);
    let packed = zstd::bulk::compress(&data, 1).unwrap();
    let frame = compressed_call(1, section(1, data.len() as u32, &packed));
    for chunk in frame.chunks(7) {
        p.server.handle_input(chunk, p.now).unwrap();
    }
    assert_eq!(p.server_call().args, data);
}

#[test]
fn a_standalone_decoder_inflates_once_told_the_algorithms() {
    let data = json(10_000);
    let packed = zstd::bulk::compress(&data, 1).unwrap();
    let frame = compressed_call(1, section(1, data.len() as u32, &packed));
    let mut d = FrameDecoder::new(Limits::default());
    assert_eq!(
        d.decode(&mut frame.clone()).unwrap_err().kind_name(),
        "bad_flags"
    );
    let mut d = FrameDecoder::new(Limits::default());
    d.set_compression(vec![CompressionId::ZSTD]);
    let Some(Frame::Call(c)) = d.decode(&mut frame.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(c.args, data);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever a peer puts in a compressed section (any algorithm byte, any declared size,
    /// any data, valid zstd or not), the receiver inflates it exactly or closes with a peer
    /// error; it never panics and never hands on a section of another size than declared.
    #[test]
    fn any_compressed_section_is_inflated_exactly_or_refused(
        alg in proptest::prelude::prop_oneof![proptest::prelude::Just(1u8), 0u8..=255],
        lie in proptest::option::of(0u32..200_000),
        valid in proptest::prelude::any::<bool>(),
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
    ) {
        let declared = lie.unwrap_or(data.len() as u32);
        let honest = alg == 1 && valid && declared as usize == data.len();
        let body = if valid { zstd::bulk::compress(&data, 1).unwrap() } else { data.clone() };
        let mut s = server(Compression::zstd());
        s.limits.max_frame_len = 100_000;
        let mut p = Pair::connected(client(Compression::zstd()), s);
        let frame = compressed_call(1, section(alg, declared, &body));
        match p.server.handle_input(&frame, p.now) {
            Ok(()) => {
                let c = p.server_call();
                proptest::prop_assert_eq!(c.args.len(), declared as usize);
                proptest::prop_assert_eq!(&c.args[..], &data[..]);
            }
            Err(e) => {
                proptest::prop_assert!(!honest || data.is_empty(), "an honest section refused: {}", e);
                proptest::prop_assert_eq!(e.cause(), wirecall_protocol::Cause::Peer);
                proptest::prop_assert!(p.server.is_closed());
            }
        }
    }
}
