//! Runs the cargo-fuzz decoder target's logic (`fuzz/fuzz_targets/decode_logic.rs`) under
//! proptest, so it runs on stable in CI.

#[path = "../../fuzz/fuzz_targets/decode_logic.rs"]
mod decode_logic;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use wirecall_protocol::{
    Annotations, Call, CodecId, Frame, GoAway, Hello, Limits, Method, ProviderId, Reply, RequestId,
};

/// A CALL with positional arguments only (and a deadline when given).
fn plain(id: u64, deadline: Option<Duration>) -> Frame {
    let annotations = match deadline {
        Some(d) => Annotations::builder().deadline(d).build(),
        None => Annotations::new(),
    };
    Frame::Call(Call {
        request_id: RequestId(id),
        provider: ProviderId(1),
        codec: CodecId::JSON,
        oneway: false,
        upload: false,
        method: Method::new("m").unwrap(),
        annotations,
        args: Bytes::from_static(b"[1]"),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    })
}

/// A few valid streams to mutate, so the fuzzer logic gets past the header checks.
fn seeds() -> Vec<Vec<u8>> {
    let frames = [
        Frame::Hello(Hello {
            versions: vec![1],
            codecs: vec![CodecId::MSGPACK, CodecId::JSON],
            limits: Limits::default(),
            extensions: Default::default(),
        }),
        Frame::Call(Call {
            request_id: RequestId(1),
            provider: ProviderId(1),
            codec: CodecId::JSON,
            oneway: false,
            upload: false,
            method: Method::new("m").unwrap(),
            annotations: Annotations::builder().insert("k", b"v").unwrap().build(),
            args: Bytes::from_static(b"[1]"),
            kwargs: Bytes::new(),
            attachment: Bytes::from_static(b"att"),
        }),
        // Plain calls, one with a deadline: runs answered in one pass.
        plain(2, None),
        plain(3, None),
        plain(4, Some(Duration::from_secs(5))),
        plain(5, None),
        plain(6, None),
        plain(7, None),
        Frame::Reply(Reply {
            request_id: RequestId(1),
            codec: CodecId::JSON,
            stream: true,
            annotations: Annotations::new(),
            result: Bytes::from_static(b"1"),
            attachment: Bytes::new(),
        }),
        Frame::Cancel(RequestId(1)),
        Frame::GoAway(GoAway {
            last_request_id: RequestId(1),
            code: wirecall_protocol::ErrorCode::NO_ERROR,
            message: "x".into(),
        }),
    ];
    let mut all = BytesMut::new();
    for f in &frames {
        f.encode(&mut all).unwrap();
    }
    vec![all.to_vec()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_logic::run(&data);
    }

    #[test]
    fn mutated_valid_stream(
        sel in any::<u8>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
    ) {
        let mut data = seeds().remove(0);
        for (pos, val) in flips {
            let i = pos % data.len();
            data[i] = val;
        }
        data.truncate(cut % (data.len() + 1));
        let mut input = vec![sel];
        input.extend_from_slice(&data);
        decode_logic::run(&input);
    }
}

#[test]
fn seeds_decode_cleanly() {
    // Guards the mutation test: unmutated seeds must decode without error.
    for s in seeds() {
        let mut buf = BytesMut::from(&s[..]);
        let mut d = wirecall_protocol::FrameDecoder::default();
        let mut n = 0;
        while let Some(_f) = d.decode(&mut buf).unwrap() {
            n += 1;
        }
        assert_eq!(n, 11);
        assert!(buf.is_empty());
        let mut input = vec![0x85];
        input.extend_from_slice(&s);
        decode_logic::run(&input);
    }
}
