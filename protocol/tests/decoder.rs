//! Decoder behaviour that byte vectors cannot show: allocation, zero copy, the failed state,
//! and the wire newtypes and error classification.

use bytes::{BufMut, Bytes, BytesMut};
use wirecall_protocol::{
    detect_dialect, Annotations, Call, CallRef, Cause, CodecId, Dialect, ErrorCode, Flags, Frame,
    FrameDecoder, Kind, Limits, Method, ProtocolError, ProviderId, RequestId, HEADER_LEN, MAGIC,
};

fn call(payload: Bytes, attachment: Bytes) -> Frame {
    Frame::Call(Call {
        request_id: RequestId(1),
        provider: ProviderId(3),
        codec: CodecId::MSGPACK,
        oneway: false,
        upload: false,
        method: Method::new("svc_method").unwrap(),
        annotations: Annotations::new(),
        args: payload,
        kwargs: Bytes::new(),
        attachment,
    })
}

/// A CALL header declaring `payload_len` bytes of payload and nothing else after it.
fn call_header(payload_len: u32) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_slice(&MAGIC);
    b.put_u8(1);
    b.put_u8(Kind::CALL.0);
    b.put_u16(0);
    b.put_u8(1);
    b.put_u8(0);
    b.put_u16(0);
    b.put_u64(1);
    b.put_u16(0); // route length 0 is a field error for CALL; set it below
    b.put_u16(0);
    b.put_u32(0);
    b.put_u32(payload_len);
    b.put_u32(0);
    b.put_u32(0);
    // route length = 1
    b[21] = 1;
    b
}

#[test]
fn oversized_frame_is_rejected_before_allocating() {
    let mut d = FrameDecoder::new(Limits {
        max_frame_len: 1 << 16,
        ..Limits::default()
    });
    let mut buf = call_header(1 << 30);
    let cap_before = buf.capacity();
    let err = d.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, ProtocolError::FrameTooLarge { len, max } if len == 40 + 1 + (1 << 30) && max == 1 << 16)
    );
    assert_eq!(
        buf.capacity(),
        cap_before,
        "no capacity reserved for a rejected frame"
    );
    assert_eq!(err.cause(), Cause::Peer);
    assert_eq!(err.code(), ErrorCode::LIMIT_EXCEEDED);
    // The decoder stays failed: the stream cannot be resynchronised.
    let mut fresh = BytesMut::new();
    call(Bytes::new(), Bytes::new()).encode(&mut fresh).unwrap();
    assert_eq!(d.decode(&mut fresh).unwrap_err(), err);
}

#[test]
fn capacity_is_reserved_after_the_check() {
    let mut d = FrameDecoder::default();
    let mut buf = call_header(1 << 20);
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() >= HEADER_LEN + 1 + (1 << 20));
}

#[test]
fn header_is_not_reallocated_per_byte() {
    // Need-more before the header is complete reserves at most a header's worth.
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::from(&MAGIC[..]);
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() >= HEADER_LEN);
    assert!(buf.capacity() < 4096);
}

#[test]
fn payload_and_attachment_are_not_copied() {
    let payload = Bytes::from(vec![7u8; 64 * 1024]);
    let attachment = Bytes::from(vec![9u8; 64 * 1024]);
    let mut buf = BytesMut::new();
    call(payload.clone(), attachment.clone())
        .encode(&mut buf)
        .unwrap();
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let mut d = FrameDecoder::default();
    let Some(Frame::Call(c)) = d.decode(&mut buf).unwrap() else {
        panic!("not a call")
    };
    for section in [&c.args, &c.attachment] {
        let p = section.as_ptr() as usize;
        assert!(
            p >= start && p + section.len() <= end,
            "section was copied out of the buffer"
        );
    }
    assert_eq!(c.args, payload);
    assert_eq!(c.attachment, attachment);
}

#[test]
fn encode_head_leaves_the_attachment_out() {
    let attachment = Bytes::from(vec![1u8; 1000]);
    let f = call(Bytes::from_static(b"[]"), attachment.clone());
    let mut head = BytesMut::new();
    let att = f.encode_head(&mut head).unwrap();
    assert_eq!(
        att.as_ptr(),
        attachment.as_ptr(),
        "attachment handed back, not copied"
    );
    assert_eq!(head.len(), HEADER_LEN + "svc_method".len() + 2);
}

#[test]
fn encode_refuses_frames_that_break_the_rules() {
    let mut buf = BytesMut::new();
    let Frame::Call(mut c) = call(Bytes::new(), Bytes::new()) else {
        unreachable!()
    };
    c.request_id = RequestId::NONE;
    let e = Frame::Call(c.clone()).encode(&mut buf).unwrap_err();
    assert_eq!(e.kind_name(), "bad_field");
    c.request_id = RequestId(1);
    c.codec = CodecId::NONE;
    assert_eq!(
        Frame::Call(c.clone())
            .encode(&mut buf)
            .unwrap_err()
            .kind_name(),
        "bad_field"
    );
    c.codec = CodecId::RESERVED;
    assert_eq!(
        Frame::Call(c).encode(&mut buf).unwrap_err().kind_name(),
        "bad_field"
    );
    assert!(buf.is_empty(), "nothing written on error");
    let annotations = Annotations::new();
    let long = "a".repeat(65536);
    for (method, id, codec) in [
        ("", RequestId(1), CodecId(1)),
        (long.as_str(), RequestId(1), CodecId(1)),
        ("svc_m", RequestId::NONE, CodecId(1)),
        ("svc_m", RequestId(1), CodecId::NONE),
    ] {
        let r = CallRef {
            request_id: id,
            provider: ProviderId(1),
            codec,
            oneway: false,
            method,
            annotations: &annotations,
            args: b"",
            kwargs: b"",
            attachment: b"",
        }
        .encode(&mut buf);
        assert!(r.is_err(), "{} {id:?} {codec:?}", method.len());
    }
    assert!(buf.is_empty(), "nothing written on error");
    assert!(Method::new("").is_err());
    assert!(Method::new(Bytes::from(vec![b'a'; 65536])).is_err());
    assert!(Method::new(Bytes::from_static(b"\xff")).is_err());
    assert!(Annotations::builder().insert("wc.deadline", b"x").is_err());
    assert!(Annotations::builder().insert("", b"x").is_err());
}

#[test]
fn unknown_wire_values_are_representable() {
    assert_eq!(format!("{:?}", Kind(0x42)), "Kind(0x42)");
    assert_eq!(format!("{}", Kind::CALL), "CALL");
    assert_eq!(Kind(0x42).name(), None);
    assert_eq!(format!("{:?}", CodecId(200)), "CodecId(200)");
    assert_eq!(format!("{}", CodecId(200)), "codec#200");
    assert_eq!(format!("{}", CodecId::CBOR), "cbor");
    assert!(CodecId(200).is_user() && CodecId(200).is_codec());
    assert!(!CodecId::NONE.is_codec() && !CodecId::RESERVED.is_codec());
    assert_eq!(CodecId::SERPENT.0, 7);
    assert_eq!(
        format!("{:?}", ErrorCode(0x8000_0001)),
        "ErrorCode(0x80000001)"
    );
    assert!(Flags::ONEWAY.union(Flags::STREAM).contains(Flags::STREAM));
    assert_eq!(ProviderId::DAEMON.0, 0xffff);
}

#[test]
fn dialect_by_first_bytes() {
    assert_eq!(detect_dialect(&[]), None);
    assert_eq!(detect_dialect(&[0x89, b'W']), None);
    assert_eq!(detect_dialect(b"PY"), None);
    assert_eq!(detect_dialect(&MAGIC), Some(Dialect::Native));
    assert_eq!(detect_dialect(b"PYRO\x01\xf6"), Some(Dialect::Pyro5));
    assert_eq!(detect_dialect(b"G"), Some(Dialect::Unknown));
    assert_eq!(detect_dialect(b"PYRX"), Some(Dialect::Unknown));
    assert_eq!(
        detect_dialect(&[0x16, 0x03, 0x01, 0x00]),
        Some(Dialect::Unknown)
    ); // TLS
}

#[test]
fn errors_say_who_and_whether_to_retry() {
    let peer = ProtocolError::UnknownKind { kind: Kind(9) };
    assert_eq!(peer.cause(), Cause::Peer);
    assert!(!peer.is_retryable());
    assert_eq!(peer.code(), ErrorCode::PROTOCOL_ERROR);
    assert_eq!(ProtocolError::GoingAway.cause(), Cause::Local);
    assert!(ProtocolError::GoingAway.is_retryable());
    assert_eq!(ProtocolError::PingTimeout.cause(), Cause::Timeout);
    assert!(ProtocolError::PingTimeout.is_retryable());
    let refused = ProtocolError::CodecRefused {
        codec: CodecId::CBOR,
        accepted: vec![CodecId::JSON, CodecId::MSGPACK],
    };
    assert_eq!(
        refused.to_string(),
        "codec cbor refused; this side accepts json, msgpack"
    );
    assert_eq!(refused.code(), ErrorCode::CODEC_REFUSED);
    assert!(ErrorCode::SHUTTING_DOWN.is_retryable());
    assert!(!ErrorCode::CODEC_REFUSED.is_retryable());
    // Display text tells the reader what to do.
    let big = ProtocolError::FrameTooLarge { len: 10, max: 5 };
    assert!(big.to_string().contains("raise max_frame_len"));
}

#[test]
fn annotations_accessors() {
    let a = Annotations::builder()
        .deadline(std::time::Duration::from_millis(1500))
        .correlation_id([7; 16])
        .insert("tenant", b"acme")
        .unwrap()
        .build();
    assert_eq!(a.deadline(), Some(std::time::Duration::from_millis(1500)));
    assert_eq!(a.correlation_id(), Some([7; 16]));
    assert_eq!(a.get("tenant"), Some(&b"acme"[..]));
    assert_eq!(a.user().collect::<Vec<_>>(), vec![("tenant", &b"acme"[..])]);
    assert_eq!(Annotations::from_wire(a.as_bytes().clone()).unwrap(), a);
    assert!(Annotations::new().is_empty());
}
