//! Property tests: any frame round-trips through encode/decode under any split of the bytes.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use wirecall_protocol::{
    Annotations, Call, CodecId, ErrorBody, ErrorCode, ErrorFrame, ExtensionTag, Extensions, Frame,
    FrameDecoder, GoAway, Hello, Limits, Method, ProtocolError, ProviderId, Refuse, Reply,
    RequestId, StreamItem, Welcome,
};

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn codec() -> impl Strategy<Value = CodecId> {
    (1u8..=254).prop_map(CodecId)
}

fn codecs(min: usize) -> impl Strategy<Value = Vec<CodecId>> {
    proptest::collection::vec(codec(), min..6)
}

fn rid() -> impl Strategy<Value = RequestId> {
    (1u64..).prop_map(RequestId)
}

fn limits() -> impl Strategy<Value = Limits> {
    (Limits::MIN_FRAME_LEN.., any::<u32>(), 1u32..).prop_map(|(f, a, i)| Limits {
        max_frame_len: f,
        max_annotations_len: a,
        max_in_flight: i,
    })
}

fn extensions() -> impl Strategy<Value = Extensions> {
    proptest::collection::vec((1u8..=255, bytes(20)), 0..4).prop_map(|entries| {
        let mut e = Extensions::new();
        for (tag, value) in entries {
            e.set(ExtensionTag(tag), value).unwrap();
        }
        e
    })
}

fn annotations() -> impl Strategy<Value = Annotations> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<[u8; 16]>()),
        proptest::collection::vec(("u[a-z0-9_.é]{0,12}", bytes(20)), 0..4),
    )
        .prop_map(|(deadline, corr, user)| {
            let mut b = Annotations::builder();
            if let Some(d) = deadline {
                b = b.deadline(std::time::Duration::from_micros(d));
            }
            if let Some(c) = corr {
                b = b.correlation_id(c);
            }
            for (k, v) in user {
                b = b.insert(&k, &v).unwrap();
            }
            b.build()
        })
}

fn error_body() -> impl Strategy<Value = (CodecId, ErrorBody)> {
    (
        prop_oneof![any::<u32>(), Just(7u32), Just(8u32)],
        ".{0,20}",
        ".{0,40}",
        ".{0,40}",
        codecs(0),
        prop_oneof![Just(None), codec().prop_map(Some)],
        bytes(20),
        proptest::collection::vec(".{0,12}", 0..4),
    )
        .prop_map(|(code, t, m, tr, accepted, codec, detail, names)| {
            let (codec, detail) = match codec {
                Some(c) => (c, detail),
                None => (CodecId::NONE, Bytes::new()),
            };
            let names = if code == 7 || code == 8 {
                names
            } else {
                Vec::new()
            };
            (
                codec,
                ErrorBody {
                    code: ErrorCode(code),
                    type_name: t,
                    message: m,
                    trace: tr,
                    accepted,
                    names,
                    detail,
                },
            )
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 1..5),
            codecs(1),
            limits(),
            extensions()
        )
            .prop_map(
                |(versions, codecs, limits, extensions)| Frame::Hello(Hello {
                    versions,
                    codecs,
                    limits,
                    extensions,
                })
            ),
        (
            any::<u8>(),
            codecs(1),
            any::<prop::sample::Index>(),
            limits(),
            extensions()
        )
            .prop_map(|(version, accepted, i, limits, extensions)| Frame::Welcome(
                Welcome {
                    version,
                    codec: accepted[i.index(accepted.len())],
                    accepted,
                    limits,
                    extensions,
                }
            )),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..4),
            codecs(0),
            ".{0,30}"
        )
            .prop_map(|(code, versions, accepted, message)| Frame::Refuse(Refuse {
                code: ErrorCode(code),
                versions,
                accepted,
                message,
            })),
        (
            rid(),
            any::<u16>(),
            codec(),
            any::<bool>(),
            "[a-zA-Z_][a-zA-Z0-9_]{0,30}",
            annotations(),
            bytes(200),
            bytes(50),
            bytes(300)
        )
            .prop_map(
                |(id, p, c, oneway, m, a, args, kwargs, att)| Frame::Call(Call {
                    request_id: id,
                    provider: ProviderId(p),
                    codec: c,
                    oneway,
                    upload: false,
                    method: Method::new(m).unwrap(),
                    annotations: a,
                    args,
                    kwargs,
                    attachment: att,
                })
            ),
        (
            rid(),
            codec(),
            any::<bool>(),
            annotations(),
            bytes(200),
            bytes(300)
        )
            .prop_map(|(id, c, stream, a, result, att)| Frame::Reply(Reply {
                request_id: id,
                codec: c,
                stream,
                annotations: a,
                result,
                attachment: att,
            })),
        (rid(), annotations(), error_body()).prop_map(|(id, a, (codec, body))| Frame::Error(
            ErrorFrame {
                request_id: id,
                codec,
                annotations: a,
                body
            }
        )),
        rid().prop_map(Frame::Cancel),
        (rid(), codec(), annotations(), bytes(100), bytes(100)).prop_map(
            |(id, c, a, item, att)| Frame::StreamItem(StreamItem {
                request_id: id,
                codec: c,
                annotations: a,
                item,
                attachment: att,
            })
        ),
        rid().prop_map(Frame::StreamEnd),
        any::<[u8; 8]>().prop_map(Frame::Ping),
        any::<[u8; 8]>().prop_map(Frame::Pong),
        (any::<u64>(), any::<u32>(), ".{0,30}").prop_map(|(l, c, m)| Frame::GoAway(GoAway {
            last_request_id: RequestId(l),
            code: ErrorCode(c),
            message: m,
        })),
    ]
}

/// Decodes `data` fed in chunks cut at `cuts` (positions taken modulo the length).
fn decode_split(data: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, ProtocolError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    let mut d = FrameDecoder::new(Limits {
        max_frame_len: u32::MAX,
        max_annotations_len: u32::MAX,
        max_in_flight: 1,
    });
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for w in points.windows(2) {
        buf.extend_from_slice(&data[w[0]..w[1]]);
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
    }
    while let Some(f) = d.decode_eof(&mut buf)? {
        out.push(f);
    }
    assert!(buf.is_empty());
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn frame_round_trips_under_any_split(
        f in frame(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut buf = BytesMut::new();
        f.encode(&mut buf).unwrap();
        prop_assert_eq!(buf.len() as u64, f.encoded_len().unwrap());
        let frames = decode_split(&buf, &cuts).unwrap();
        prop_assert_eq!(frames, vec![f]);
    }

    #[test]
    fn a_borrowed_call_encodes_like_the_owned_one(f in frame()) {
        if let Frame::Call(c) = &f {
            let mut owned = BytesMut::new();
            f.encode(&mut owned).unwrap();
            let mut borrowed = BytesMut::from(&b"prefix"[..]);
            c.borrowed()
            .encode(&mut borrowed)
            .unwrap();
            prop_assert_eq!(&borrowed[..6], b"prefix");
            prop_assert_eq!(&borrowed[6..], &owned[..]);
        }
    }

    #[test]
    fn a_peeked_reply_agrees_with_decode(
        f in prop_oneof![
            frame(),
            (
                rid(),
                codec(),
                bytes(200),
                prop::bool::weighted(0.2),
                prop_oneof![4 => Just(Annotations::new()), 1 => annotations()],
                prop_oneof![4 => Just(Bytes::new()), 1 => bytes(10)],
            )
                .prop_map(|(request_id, codec, result, stream, annotations, attachment)| {
                    Frame::Reply(Reply {
                        request_id,
                        codec,
                        stream,
                        annotations,
                        result,
                        attachment,
                    })
                }),
        ],
        max_result in 0usize..300,
        flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = BytesMut::new();
        f.encode(&mut buf).unwrap();
        buf.extend_from_slice(b"next frame");
        if let Some((at, x)) = flip {
            let i = at.index(buf.len());
            buf[i] ^= x;
        }
        // A cut anywhere: a peek of an unfinished frame sees nothing.
        let original = buf.clone().freeze();
        let short = &original[..cut.index(original.len())];
        let d = FrameDecoder::new(Limits::default());
        let view = d.peek_reply(&original, max_result);
        if let Some(v) = d.peek_reply(short, max_result) {
            prop_assert_eq!(Some(v), view);
        }
        let mut d = FrameDecoder::new(Limits::default());
        let before = buf.len();
        let decoded = d.decode(&mut buf);
        match (view, decoded) {
            (Some(v), Ok(Some(Frame::Reply(r)))) => {
                prop_assert_eq!(v.request_id, r.request_id);
                prop_assert_eq!(v.codec, r.codec);
                prop_assert_eq!(v.result, &r.result[..]);
                prop_assert!(v.result.len() <= max_result);
                prop_assert!(!r.stream && r.annotations.is_empty() && r.attachment.is_empty());
                prop_assert_eq!(v.frame_len, before - buf.len());
            }
            (Some(v), other) => prop_assert!(false, "peeked {:?} but decode gave {:?}", v, other),
            (None, Ok(Some(Frame::Reply(r)))) => {
                // Only a reply the peek does not cover.
                prop_assert!(
                    r.stream
                        || !r.annotations.is_empty()
                        || !r.attachment.is_empty()
                        || r.result.len() > max_result
                );
            }
            (None, _) => {}
        }
    }

    #[test]
    fn streams_of_frames_round_trip(
        fs in proptest::collection::vec(frame(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut buf = BytesMut::new();
        for f in &fs {
            f.encode(&mut buf).unwrap();
        }
        prop_assert_eq!(decode_split(&buf, &cuts).unwrap(), fs);
    }

    #[test]
    fn encode_head_plus_attachment_equals_encode(f in frame()) {
        let mut whole = BytesMut::new();
        f.encode(&mut whole).unwrap();
        let mut head = BytesMut::new();
        let att = f.encode_head(&mut head).unwrap();
        head.extend_from_slice(&att);
        prop_assert_eq!(head, whole);
    }

    #[test]
    fn every_strict_prefix_is_truncated(f in frame(), cut in any::<usize>()) {
        let mut buf = BytesMut::new();
        f.encode(&mut buf).unwrap();
        let n = cut % buf.len();
        let mut part = BytesMut::from(&buf[..n]);
        let mut d = FrameDecoder::new(Limits { max_frame_len: u32::MAX, max_annotations_len: u32::MAX, max_in_flight: 1 });
        prop_assert_eq!(d.decode(&mut part).unwrap(), None);
        match d.decode_eof(&mut part) {
            Ok(None) => prop_assert_eq!(n, 0),
            Err(e) => prop_assert_eq!(e.kind_name(), "truncated"),
            Ok(Some(f)) => prop_assert!(false, "decoded {:?} from a prefix", f),
        }
    }
}
