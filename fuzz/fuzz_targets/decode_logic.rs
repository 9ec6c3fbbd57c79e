//! The decoder fuzz target's logic, shared by `fuzz_targets/decoder.rs` (cargo-fuzz) and
//! `protocol/tests/fuzz_logic.rs` (a proptest that runs it in CI on stable).
//!
//! Invariants checked on any input:
//! - decoding never panics, whatever the bytes and however they are split;
//! - every decoded frame re-encodes, and the re-encoded frames are exactly the input bytes
//!   they came from (the encoding is canonical);
//! - the same bytes fed to a server and a client state machine never panic, and after an
//!   error the machine stays closed;
//! - fed to a server the way the engine's reader feeds it (runs of plain calls answered in
//!   one pass, `answer_calls`; other calls accepted in place, `accept_call`; the rest one
//!   frame at a time), the same holds, and a pass never takes more than the complete frames
//!   it was given.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use wirecall_protocol::{
    Answered, ClientConfig, ClientConnection, CodecId, FrameDecoder, Limits, ServerConfig,
    ServerConnection,
};

/// Runs every check on `data`. The first byte chooses the chunk size and the limits.
pub(crate) fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(sel % 61) + 1;
    let limits = Limits {
        max_frame_len: if sel & 0x80 == 0 { 4096 } else { 1 << 20 },
        max_annotations_len: u32::from(sel & 0x3f) * 8,
        max_in_flight: u32::from(sel % 3) + 1,
    };

    // 1. decoding under this split
    let mut dec = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut consumed_ok = 0usize;
    'outer: for c in rest.chunks(chunk) {
        buf.extend_from_slice(c);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => {
                    // The decoder stays failed.
                    assert!(dec.decode(&mut buf).is_err());
                    break 'outer;
                }
            }
        }
    }
    if let Ok(Some(f)) = dec.decode_eof(&mut buf) {
        frames.push(f);
    }

    // 2. canonical re-encoding
    let mut out = BytesMut::new();
    for f in &frames {
        let before = out.len();
        f.encode(&mut out).expect("a decoded frame must re-encode");
        let mut again = BytesMut::from(&out[before..]);
        let big = Limits {
            max_frame_len: u32::MAX,
            max_annotations_len: u32::MAX,
            max_in_flight: 1,
        };
        let g = FrameDecoder::new(big)
            .decode(&mut again)
            .expect("re-encoded frame must decode")
            .expect("re-encoded frame must be complete");
        assert_eq!(&g, f);
        assert!(again.is_empty());
        consumed_ok = out.len();
    }
    assert_eq!(
        &out[..],
        &rest[..consumed_ok],
        "re-encoding differs from the input"
    );

    // 3. state machines
    let now = Instant::now();
    let mut sc = ServerConfig::new(vec![CodecId::JSON, CodecId::MSGPACK]);
    sc.limits = limits;
    if let Ok(mut server) = ServerConnection::new(sc, now) {
        for (i, c) in rest.chunks(chunk).enumerate() {
            let t = now + Duration::from_millis(i as u64);
            if server.handle_input(c, t).is_err() {
                assert!(server.is_closed());
                assert!(server.handle_input(c, t).is_err());
                break;
            }
            let _ = server.handle_timeout(t);
            while server.poll_event().is_some() {}
            let _ = server.poll_transmit();
        }
    }
    let mut sc = ServerConfig::new(vec![CodecId::JSON, CodecId::MSGPACK]);
    sc.limits = limits;
    if let Ok(mut server) = ServerConnection::new(sc, now) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        'read: for (i, c) in rest.chunks(chunk).enumerate() {
            let t = now + Duration::from_millis(i as u64);
            buf.extend_from_slice(c);
            loop {
                let before = buf.len();
                let done = server.answer_calls(&buf, t, 1 + i % 4, &mut out, |call, frame, out| {
                    assert_eq!(frame.len(), call.frame_len());
                    // The handler's choice, from the request id: answer (echoing the
                    // arguments, late for some calls with a deadline), take for later, or
                    // decline.
                    match call.request_id.0 % 5 {
                        0 => Answered::Declined,
                        1 => Answered::Later,
                        n => {
                            out.extend_from_slice(&frame[call.args()]);
                            Answered::Reply {
                                finished: (n == 4).then(|| t + Duration::from_secs(3600)),
                            }
                        }
                    }
                });
                assert!(done.consumed <= before);
                let _ = buf.split_to(done.consumed);
                if done.frames > 0 {
                    continue;
                }
                if let Some(call) = server.accept_call(&buf, t) {
                    let _ = buf.split_to(call.frame_len());
                    continue;
                }
                match server.handle_input_frames(&mut buf, t, 1) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => {
                        assert!(server.is_closed());
                        break 'read;
                    }
                }
            }
            let _ = server.handle_timeout(t);
            while server.poll_event().is_some() {}
            let _ = server.poll_transmit();
        }
    }
    let mut cc = ClientConfig::new(vec![CodecId::MSGPACK, CodecId::JSON]);
    cc.limits = limits;
    if let Ok(mut client) = ClientConnection::new(cc, now) {
        let _ = client.poll_transmit();
        for (i, c) in rest.chunks(chunk).enumerate() {
            let t = now + Duration::from_millis(i as u64);
            if client.handle_input(c, t).is_err() {
                assert!(client.is_closed());
                break;
            }
            let _ = client.handle_timeout(t);
            while client.poll_event().is_some() {}
            let _ = client.poll_transmit();
        }
        let _ = client.handle_eof();
    }
}
