//! Runs the cargo-fuzz `pyro` target's logic (`fuzz/fuzz_targets/pyro_logic.rs`) on stable:
//! over the captured Pyro5 traffic of the reference (as the tests in `pyro.rs` have it),
//! mutations of it, and random bytes under proptest.

#[path = "../../fuzz/fuzz_targets/pyro_logic.rs"]
mod pyro_logic;

use bytes::BytesMut;
use proptest::prelude::*;
use wirecall_protocol::pyro::{Annotations, Flags, Message, MessageType, SerializerId};

/// A valid client stream: CONNECT, two INVOKEs (one oneway), a PING.
fn client_stream() -> Vec<u8> {
    let mut out = BytesMut::new();
    let msg = |t, seq, flags, payload: &[u8]| Message {
        msg_type: t,
        serializer: SerializerId::JSON,
        flags,
        seq,
        correlation_id: [0; 16],
        reserved: 0,
        annotations: Annotations::default(),
        payload: bytes::Bytes::copy_from_slice(payload),
    };
    for m in [
        msg(
            MessageType::CONNECT,
            0,
            Flags::default(),
            b"{\"handshake\":\"hi\"}",
        ),
        msg(
            MessageType::INVOKE,
            1,
            Flags::default(),
            b"{\"object\":\"x\"}",
        ),
        msg(MessageType::INVOKE, 2, Flags::ONEWAY, b"{}"),
        msg(MessageType::PING, 0, Flags::default(), b"ping"),
        msg(MessageType::INVOKE, 3, Flags::default(), b"[]"),
    ] {
        m.encode(&mut out).unwrap();
    }
    out.to_vec()
}

#[test]
fn a_valid_stream_at_every_mode() {
    let stream = client_stream();
    for mode in 0..=255u8 {
        let mut input = vec![mode];
        input.extend_from_slice(&stream);
        pyro_logic::run(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams(mode in any::<u8>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), cut in any::<prop::sample::Index>()) {
        let mut stream = client_stream();
        for (at, b) in flips {
            let i = at.index(stream.len());
            stream[i] ^= b;
        }
        stream.truncate(cut.index(stream.len() + 1));
        let mut input = vec![mode];
        input.extend(stream);
        pyro_logic::run(&input);
    }

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        pyro_logic::run(&data);
    }
}
