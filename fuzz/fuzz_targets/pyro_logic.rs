//! The `pyro` target's logic: the Pyro5 dialect (`wirecall_protocol::pyro`) under arbitrary
//! bytes. A plain function so `protocol/tests/fuzz_pyro.rs` runs it on stable.
//!
//! The first input byte chooses the split size and the limits; the rest is fed:
//!
//! * to a `MessageDecoder` in pieces: every decoded message re-encodes to exactly the bytes it
//!   was decoded from, a failed decoder stays failed, and nothing is decoded past the limits;
//! * to a `ServerSession` whose driver answers everything it is asked (accepting or refusing
//!   CONNECTs, replying to INVOKEs that want an answer, with time advancing and timers fired):
//!   every byte the session transmits decodes with a fresh decoder into whole messages of a
//!   kind a server sends, each answer echoes a sequence number the client used, and a closed
//!   session stays closed and transmits nothing more.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use wirecall_protocol::pyro::{
    MessageDecoder, MessageLimits, MessageType, Reply, SerializerId, ServerConfig, ServerEvent,
    ServerSession,
};

/// Runs one input.
pub(crate) fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let split = 1 + usize::from(mode & 0x1f);
    let limits = if mode & 0x20 != 0 {
        MessageLimits {
            max_message_len: 512,
            max_annotations_len: 64,
        }
    } else {
        MessageLimits::default()
    };
    decoder(rest, split, limits);
    server(rest, split, mode & 0x40 != 0, mode & 0x80 != 0);
}

fn decoder(data: &[u8], split: usize, limits: MessageLimits) {
    let mut d = MessageDecoder::new(limits);
    let mut buf = BytesMut::new();
    // What the decoder has consumed so far, to compare re-encodings against.
    let mut consumed = 0usize;
    for piece in data.chunks(split) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match d.decode(&mut buf) {
                Ok(Some(m)) => {
                    let used = before - buf.len();
                    let mut again = BytesMut::new();
                    m.encode(&mut again).expect("a decoded message re-encodes");
                    assert_eq!(again.len(), used, "re-encoded length differs");
                    assert!(
                        (used - 40) as u64 <= u64::from(limits.max_message_len),
                        "decoded a message over the limit"
                    );
                    assert!(
                        m.annotations.encoded_len() <= u64::from(limits.max_annotations_len),
                        "decoded annotations over the limit"
                    );
                    consumed += used;
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(d.decode(&mut buf).is_err(), "a failed decoder recovered");
                    return;
                }
            }
        }
    }
    // Whatever was consumed re-encodes byte for byte: decode the consumed prefix again in
    // one piece and compare.
    let mut whole = BytesMut::from(&data[..consumed]);
    let mut d2 = MessageDecoder::new(limits);
    let mut out = BytesMut::new();
    while let Ok(Some(m)) = d2.decode(&mut whole) {
        m.encode(&mut out).expect("a decoded message re-encodes");
    }
    assert_eq!(
        &out[..],
        &data[..consumed],
        "re-encoding is not byte-identical"
    );
}

fn server(data: &[u8], split: usize, refuse: bool, slow_clock: bool) {
    let t0 = Instant::now();
    let config = ServerConfig::new(vec![
        SerializerId::SERPENT,
        SerializerId::JSON,
        SerializerId::MSGPACK,
    ]);
    let Ok(mut s) = ServerSession::new(config, t0) else {
        return;
    };
    let mut now = t0;
    let step = if slow_clock {
        Duration::from_secs(7)
    } else {
        Duration::from_millis(3)
    };
    let mut seqs_seen: Vec<u16> = Vec::new();
    let mut closed_seen = false;
    let mut sent = BytesMut::new();
    for piece in data.chunks(split) {
        now += step;
        let _ = s.handle_input(piece, now);
        if let Some(t) = s.poll_timeout() {
            if t <= now {
                let _ = s.handle_timeout(now);
            }
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                ServerEvent::Connect(c) => {
                    seqs_seen.push(c.seq);
                    if refuse {
                        let _ = s.refuse_with_message("refused by the fuzz driver");
                    } else {
                        let _ = s.accept(Reply::new(&b"{}"[..]), now);
                    }
                }
                ServerEvent::Invoke(i) => {
                    seqs_seen.push(i.seq);
                    if !i.is_oneway() {
                        let r = if i.seq % 3 == 0 {
                            Reply::exception(&b"err"[..])
                        } else {
                            Reply::new(i.payload.clone())
                        };
                        let _ = s.reply(i.seq, r, now);
                    }
                }
                ServerEvent::Ping { seq, .. } => seqs_seen.push(seq),
                // Events added later: nothing to answer.
                _ => {}
            }
        }
        let was_closed = closed_seen;
        while let Some(b) = s.poll_transmit() {
            assert!(!was_closed, "a closed session transmitted");
            sent.extend_from_slice(&b);
        }
        closed_seen = s.is_closed();
    }
    let _ = s.handle_eof();
    while let Some(b) = s.poll_transmit() {
        assert!(!closed_seen, "a closed session transmitted");
        sent.extend_from_slice(&b);
    }
    // Everything sent is whole messages a server sends, answering sequence numbers used.
    let mut d = MessageDecoder::default();
    while !sent.is_empty() {
        let m = d
            .decode(&mut sent)
            .expect("the session's output decodes")
            .expect("the session's output ends on a message boundary");
        assert!(
            [
                MessageType::CONNECTOK,
                MessageType::CONNECTFAIL,
                MessageType::RESULT,
                MessageType::PING,
            ]
            .contains(&m.msg_type),
            "a server sent {:?}",
            m.msg_type
        );
        if m.msg_type != MessageType::CONNECTFAIL {
            assert!(
                seqs_seen.contains(&m.seq),
                "answer to seq {} that no request used",
                m.seq
            );
        }
    }
}
