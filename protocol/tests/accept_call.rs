//! The borrowed CALL path (`ServerConnection::accept_call`, falling back to
//! `handle_input_frames` one frame at a time) against the owned one (`handle_input_buf`):
//! two server machines fed the same bytes, in the same chunks, must report the same calls
//! and events, send the same bytes, fail with the same error and keep the same calls in
//! flight, whatever the frames (valid calls, calls each check refuses or treats apart,
//! control frames, broken frames).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use wirecall_protocol::{
    AcceptedCall, Annotations, Answered, Call, ClientConfig, ClientConnection, CodecId, ErrorBody,
    ErrorCode, Frame, GoAway, Method, ProtocolError, ProviderId, RequestId, ServerConfig,
    ServerConnection, ServerEvent,
};

const MAX_IN_FLIGHT: u32 = 3;

fn server(now: Instant) -> ServerConnection {
    let mut config = ServerConfig::new(vec![CodecId::POSTCARD, CodecId::JSON]);
    config.limits.max_in_flight = MAX_IN_FLIGHT;
    config.limits.max_annotations_len = 64;
    // Idle closes happen within the tests' clock steps (0 to 4.5 s per chunk).
    config.idle_timeout = Some(Duration::from_secs(4));
    ServerConnection::new(config, now).unwrap()
}

fn hello(now: Instant) -> Vec<u8> {
    let mut client =
        ClientConnection::new(ClientConfig::new(vec![CodecId::POSTCARD]), now).unwrap();
    let mut out = Vec::new();
    while let Some(b) = client.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

/// One frame (or junk) of the input, built from a few random bytes.
fn frame(spec: &[u8; 8], next_id: &mut u64) -> Vec<u8> {
    let [sel, delta, codec, ann, tweak, len, at, value] = *spec;
    let id = match delta % 8 {
        // Mostly increasing; sometimes repeated or lower (fatal).
        0..=4 => *next_id + 1,
        5 => *next_id + 3,
        6 => *next_id,
        _ => next_id.saturating_sub(1),
    };
    *next_id = (*next_id).max(id);
    let mut out = BytesMut::new();
    match sel % 16 {
        0..=9 => {
            let codec = [CodecId::POSTCARD, CodecId::JSON, CodecId::CBOR][usize::from(codec % 3)];
            let b = Annotations::builder();
            let annotations = match ann % 10 {
                0..=2 => Annotations::new(),
                3 => b.deadline(Duration::from_secs(5)).build(),
                4 => b.deadline(Duration::ZERO).build(),
                5 => b.window(4).build(),
                6 => b.batch(RequestId(id), tweak % 2 == 0).build(),
                7 => b.bulk(&[]).unwrap().build(),
                8 if tweak % 3 == 0 => b.resume([9; 16], 2).build(),
                8 => b.correlation_id([7; 16]).build(),
                _ => b.insert("k", &[1, 2, 3]).unwrap().build(),
            };
            let attachment = if tweak % 7 == 1 {
                Bytes::from_static(b"att")
            } else {
                Bytes::new()
            };
            let kwargs = if tweak % 5 == 2 {
                Bytes::from_static(b"kw")
            } else {
                Bytes::new()
            };
            Frame::Call(Call {
                request_id: RequestId(id.max(1)),
                provider: ProviderId(u16::from(tweak % 3)),
                codec,
                oneway: tweak % 4 == 3,
                // Flag UPLOAD on a server without client → server streams: fatal on both
                // paths (the borrowed one leaves it to the owned one).
                upload: tweak % 13 == 5 && tweak % 4 != 3,
                method: Method::new(if tweak % 11 == 4 {
                    Bytes::from_static("écho".as_bytes())
                } else {
                    Bytes::from_static(b"echo")
                })
                .unwrap(),
                annotations,
                args: Bytes::from(vec![b'a'; usize::from(len % 40)]),
                kwargs,
                attachment,
            })
            .encode(&mut out)
            .unwrap();
            match tweak / 16 {
                // The method name is not UTF-8 (fatal).
                1 => out[40] = 0xff,
                // COMPRESSED without compression in force (fatal).
                2 => out[7] |= 0x04,
                // Annotations that do not parse (fatal): a key length past the section.
                3 if out[27] != 0 => out[40 + 4] = 0xff,
                _ => {}
            }
            // Now and then one header byte set to anything (lengths included: the stream
            // may then be cut anywhere or wait for bytes that never come).
            if at % 4 == 0 {
                out[usize::from(at / 4) % 40] = value;
            }
        }
        10 => Frame::Cancel(RequestId(id.max(1)))
            .encode(&mut out)
            .unwrap(),
        11 => Frame::Ping([tweak; 8]).encode(&mut out).unwrap(),
        12 => Frame::GoAway(GoAway {
            last_request_id: RequestId(0),
            code: ErrorCode::NO_ERROR,
            message: "bye".into(),
        })
        .encode(&mut out)
        .unwrap(),
        13 => Frame::Credit(RequestId(id.max(1)), 1)
            .encode(&mut out)
            .unwrap(),
        14 => out.extend_from_slice(&[0x89, b'W', b'X', b'P', 1, 2, 3]),
        _ => Frame::Call(Call {
            request_id: RequestId(id.max(1)),
            provider: ProviderId(0),
            codec: CodecId::POSTCARD,
            oneway: false,
            upload: false,
            method: Method::new(Bytes::from(vec![b'm'; 8])).unwrap(),
            // Over the 64-byte annotation limit (fatal before the body is read).
            annotations: Annotations::builder()
                .insert("big", &[0; 80])
                .unwrap()
                .build(),
            args: Bytes::new(),
            kwargs: Bytes::new(),
            attachment: Bytes::new(),
        })
        .encode(&mut out)
        .unwrap(),
    }
    out.to_vec()
}

/// The owned call a borrowed one stands for, read back from its frame.
fn owned(c: &AcceptedCall, frame: &Bytes) -> Call {
    assert!(c.frame_len() <= frame.len());
    Call {
        request_id: c.request_id,
        provider: c.provider,
        codec: c.codec,
        oneway: c.oneway,
        upload: false,
        method: Method::new(frame.slice(c.route())).unwrap(),
        annotations: Annotations::from_wire(frame.slice(c.annotations())).unwrap(),
        args: frame.slice(c.args()),
        kwargs: frame.slice(c.kwargs()),
        attachment: Bytes::new(),
    }
}

/// What one step of [`Side::usual_step`] did.
enum Step {
    /// A call accepted in place.
    Accepted(AcceptedCall),
    /// Another frame handled.
    Frame,
    /// Nothing more to read now (or the machine failed).
    Done,
}

/// One server machine and what it reported.
struct Side {
    m: ServerConnection,
    buf: BytesMut,
    events: Vec<ServerEvent>,
    sent: BytesMut,
    err: Option<ProtocolError>,
    borrowed: usize,
}

impl Side {
    fn new(now: Instant) -> Side {
        Side {
            m: server(now),
            buf: BytesMut::new(),
            events: Vec::new(),
            sent: BytesMut::new(),
            err: None,
            borrowed: 0,
        }
    }

    fn take(&mut self) {
        while let Some(e) = self.m.poll_event() {
            self.events.push(e);
        }
        self.m.take_transmit(&mut self.sent);
    }

    /// The owned path.
    fn feed_owned(&mut self, data: &[u8], now: Instant) {
        self.buf.extend_from_slice(data);
        if let Err(e) = self.m.handle_input_buf(&mut self.buf, now) {
            self.err.get_or_insert(e);
        }
        self.take();
    }

    /// One frame the usual way, as the engine's reader takes it: a call `accept_call`
    /// accepts in place (its event recorded), else one frame through `handle_input_frames`.
    fn usual_step(&mut self, now: Instant) -> Step {
        if let Some(c) = self.m.accept_call(&self.buf, now) {
            let frame = self.buf.split_to(c.frame_len()).freeze();
            self.events.push(ServerEvent::Call(owned(&c, &frame)));
            return Step::Accepted(c);
        }
        match self.m.handle_input_frames(&mut self.buf, now, 1) {
            Ok(0) => Step::Done,
            Ok(_) => {
                self.take();
                Step::Frame
            }
            Err(e) => {
                self.err.get_or_insert(e);
                Step::Done
            }
        }
    }

    /// The borrowed path, as the engine's reader drives it.
    fn feed_borrowed(&mut self, data: &[u8], now: Instant) {
        self.buf.extend_from_slice(data);
        loop {
            match self.usual_step(now) {
                Step::Accepted(_) => self.borrowed += 1,
                Step::Frame => {}
                Step::Done => break,
            }
        }
        self.take();
    }

    /// Answers the oldest two-way call dispatched and not yet answered, if any.
    fn answer_one(&mut self, answered: &mut usize) -> Option<Result<(), ProtocolError>> {
        let calls: Vec<RequestId> = self
            .events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Call(c) if !c.oneway => Some(c.request_id),
                _ => None,
            })
            .collect();
        let id = *calls.get(*answered)?;
        *answered += 1;
        let r = self.m.reply_slice(id, CodecId::POSTCARD, b"ok");
        self.take();
        Some(r)
    }
}

/// Feeds the hello and the frames of `specs`, cut into chunks of the sizes `cuts` cycles
/// through, to a side fed by `feed_a` and one fed by `feed_b`: after every chunk and every
/// timer both report the same errors, events and bytes sent, and keep the same calls in
/// flight and timers. `between` runs after each chunk that failed neither (given its
/// size). Returns the calls side b took its own way ([`Side::borrowed`]).
fn compare(
    specs: &[[u8; 8]],
    cuts: &[u8],
    mut feed_a: impl FnMut(&mut Side, &[u8], Instant),
    mut feed_b: impl FnMut(&mut Side, &[u8], Instant),
    mut between: impl FnMut(&mut Side, &mut Side, usize),
) -> usize {
    let start = Instant::now();
    let mut input = hello(start);
    let mut next_id = 0;
    for s in specs {
        input.extend(frame(s, &mut next_id));
    }
    let mut a = Side::new(start);
    let mut b = Side::new(start);
    let mut now = start;
    let mut at = 0;
    let mut cuts = cuts.iter().cycle();
    while at < input.len() {
        let n = (usize::from(*cuts.next().unwrap_or(&255)) + 1).min(input.len() - at);
        let chunk = &input[at..at + n];
        at += n;
        feed_a(&mut a, chunk, now);
        feed_b(&mut b, chunk, now);
        assert_eq!(a.err, b.err, "errors after {at} bytes");
        assert_eq!(a.events, b.events, "events after {at} bytes");
        assert_eq!(a.sent, b.sent, "bytes sent after {at} bytes");
        assert_eq!(a.m.in_flight(), b.m.in_flight());
        assert_eq!(a.m.poll_timeout(), b.m.poll_timeout());
        if a.err.is_some() {
            break;
        }
        between(&mut a, &mut b, n);
        now += Duration::from_millis(u64::from(n as u8 % 4) * 1500);
        assert_eq!(a.m.handle_timeout(now), b.m.handle_timeout(now));
        a.take();
        b.take();
        assert_eq!(a.events, b.events);
        assert_eq!(a.sent, b.sent);
    }
    b.borrowed
}

/// The owned path against the borrowed one, answering a call now and then.
fn check(specs: &[[u8; 8]], cuts: &[u8]) -> usize {
    let (mut answered_a, mut answered_b) = (0, 0);
    compare(
        specs,
        cuts,
        Side::feed_owned,
        Side::feed_borrowed,
        |a, b, n| {
            if n % 3 == 0 {
                assert_eq!(a.answer_one(&mut answered_a), b.answer_one(&mut answered_b));
            }
        },
    )
}

#[test]
fn plain_calls_take_the_borrowed_path() {
    // Oneway (tweak 3): none waits for an answer, so the in-flight limit does not apply.
    let specs: Vec<[u8; 8]> = (0..6).map(|i| [0, 0, 0, 0, 3, i, 1, 0]).collect();
    assert_eq!(check(&specs, &[255]), 6);
    // Two-way: as many as the in-flight limit, the rest refused the usual way.
    let specs: Vec<[u8; 8]> = (0..6).map(|i| [0, 0, 0, 0, 0, i, 1, 0]).collect();
    assert_eq!(check(&specs, &[255]), MAX_IN_FLIGHT as usize);
    // A method name that is UTF-8 but not ASCII.
    assert_eq!(check(&[[0, 0, 0, 0, 4, 9, 1, 0]], &[255]), 1);
    // Split anywhere, frames still complete in one chunk go the borrowed way.
    assert!(check(&specs, &[0, 7, 39, 40, 83, 200]) >= 1);
}

#[test]
fn each_header_byte_agrees() {
    // Every header byte of a plain call, set to a few values each.
    for at in 0..40u8 {
        for value in [0u8, 1, 2, 3, 4, 5, 0x40, 0x80, 0xff] {
            let specs = [
                [0, 0, 0, 0, 0, 1, 1, 0],
                [0, 0, 0, 0, 0, 7, at * 4, value],
                [0, 0, 0, 0, 0, 2, 1, 0],
            ];
            check(&specs, &[255]);
            check(&specs, &[3, 50, 90]);
        }
    }
}

/// One frame of each kind after a plain call, the stream read whole, through `check`.
fn each_check(mut check: impl FnMut(&[[u8; 8]])) {
    for sel in 0..16u8 {
        for ann in 0..10u8 {
            for tweak in [0u8, 1, 2, 3, 4, 16, 32, 48] {
                for codec in 0..3u8 {
                    check(&[
                        [0, 0, 0, 0, 0, 1, 1, 0],
                        [sel, 0, codec, ann, tweak, 5, 1, 0],
                        [0, 0, 0, 0, 0, 2, 1, 0],
                    ]);
                }
            }
        }
    }
}

#[test]
fn each_check_agrees() {
    each_check(|specs| {
        check(specs, &[255]);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn borrowed_and_owned_paths_agree(
        specs in proptest::collection::vec(any::<[u8; 8]>(), 0..40),
        cuts in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        check(&specs, &cuts);
    }
}

// ---- `answer_calls`: calls answered in one pass, against `accept_call` + `reply_slice` ----

/// The result every handler of the tests below answers.
const RESULT: &[u8] = b"ok";

impl Side {
    /// The borrowed path with every two-way call without keyword arguments answered at
    /// once, before the next frame is read (what a driver with synchronous handlers does
    /// through `accept_call`).
    fn feed_answering(&mut self, data: &[u8], now: Instant) {
        self.buf.extend_from_slice(data);
        loop {
            match self.usual_step(now) {
                Step::Accepted(c) if !c.oneway && c.kwargs().is_empty() => {
                    self.m
                        .reply_slice(c.request_id, c.codec, RESULT)
                        .expect("a call in flight takes its reply");
                }
                Step::Accepted(_) | Step::Frame => {}
                Step::Done => break,
            }
        }
        self.take();
    }

    /// The same through `answer_calls` (at most `max` calls a pass), the usual path for
    /// what it leaves.
    fn feed_in_one_pass(&mut self, data: &[u8], now: Instant, max: usize) {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let mut taken = Vec::new();
            let done = self
                .m
                .answer_calls(&self.buf, now, max, &mut out, |c, frame, out| {
                    assert!(out.is_empty());
                    taken.push(owned(c, &Bytes::copy_from_slice(frame)));
                    out.extend_from_slice(RESULT);
                    Answered::Reply { finished: None }
                });
            assert_eq!(done.frames, taken.len());
            assert!(done.frames <= max);
            self.borrowed += done.frames;
            let _ = self.buf.split_to(done.consumed);
            self.events.extend(taken.into_iter().map(ServerEvent::Call));
            if done.frames > 0 {
                continue;
            }
            match self.usual_step(now) {
                Step::Accepted(c) => {
                    assert!(c.oneway || !c.kwargs().is_empty(), "left a plain call")
                }
                Step::Frame => {}
                Step::Done => break,
            }
        }
        self.take();
    }
}

/// Feeds the same input to a machine answering each plain call as `accept_call` hands it
/// out and to one answering them through `answer_calls`: the same calls, events, bytes
/// sent (replies, refusals, errors), errors, calls in flight and timers, after every
/// chunk and every timer. Returns the calls `answer_calls` took.
fn check_one_pass(specs: &[[u8; 8]], cuts: &[u8], max: usize) -> usize {
    compare(
        specs,
        cuts,
        Side::feed_answering,
        |side, data, now| side.feed_in_one_pass(data, now, max),
        |_, _, _| {},
    )
}

#[test]
fn plain_calls_are_answered_in_one_pass() {
    // Two-way calls, more than the in-flight limit: none stays in flight, so all pass.
    let specs: Vec<[u8; 8]> = (0..6).map(|i| [0, 0, 0, 0, 0, i, 1, 0]).collect();
    assert_eq!(check_one_pass(&specs, &[255], usize::MAX), 6);
    // At most `max` a pass: the next pass takes the rest.
    assert_eq!(check_one_pass(&specs, &[255], 2), 6);
    // Oneway calls and calls with keyword arguments are left to the usual path.
    let oneway: Vec<[u8; 8]> = (0..3).map(|i| [0, 0, 0, 0, 3, i, 1, 0]).collect();
    assert_eq!(check_one_pass(&oneway, &[255], usize::MAX), 0);
    assert_eq!(
        check_one_pass(&[[0, 0, 0, 0, 2, 1, 1, 0]], &[255], usize::MAX),
        0
    );
    // Split anywhere.
    assert!(check_one_pass(&specs, &[0, 7, 39, 40, 83, 200], 4) >= 1);
}

#[test]
fn each_check_agrees_in_one_pass() {
    each_check(|specs| {
        check_one_pass(specs, &[255], usize::MAX);
    });
}

/// A server past its handshake with a client machine's limits, and the frames of `calls`
/// (id, deadline) as that client sends them.
fn handshaken(
    now: Instant,
    calls: &[(u64, Option<Duration>)],
    max_frame: u32,
) -> (ServerConnection, Vec<u8>) {
    let mut config = ClientConfig::new(vec![CodecId::POSTCARD]);
    config.limits.max_frame_len = max_frame;
    let mut client = ClientConnection::new(config, now).unwrap();
    let mut m = server(now);
    let mut buf = BytesMut::new();
    while let Some(b) = client.poll_transmit() {
        buf.extend_from_slice(&b);
    }
    m.handle_input_buf(&mut buf, now).unwrap();
    let mut welcome = BytesMut::new();
    m.take_transmit(&mut welcome);
    client.handle_input_buf(&mut welcome, now).unwrap();
    while m.poll_event().is_some() {}
    let mut input = BytesMut::new();
    for &(id, deadline) in calls {
        let b = Annotations::builder();
        let annotations = match deadline {
            Some(d) => b.deadline(d).build(),
            None => Annotations::new(),
        };
        Frame::Call(Call {
            request_id: RequestId(id),
            provider: ProviderId(1),
            codec: CodecId::POSTCARD,
            oneway: false,
            upload: false,
            method: Method::new(Bytes::from_static(b"echo")).unwrap(),
            annotations,
            args: Bytes::from_static(b"a"),
            kwargs: Bytes::new(),
            attachment: Bytes::new(),
        })
        .encode(&mut input)
        .unwrap();
    }
    (m, input.to_vec())
}

fn sent_frames(m: &mut ServerConnection) -> Vec<Frame> {
    let mut sent = BytesMut::new();
    m.take_transmit(&mut sent);
    let mut dec = wirecall_protocol::FrameDecoder::new(wirecall_protocol::Limits::default());
    let mut frames = Vec::new();
    while let Some(f) = dec.decode(&mut sent).unwrap() {
        frames.push(f);
    }
    frames
}

/// The body of `frame`, which must be an ERROR answering call `id` with `code`.
fn error_body(frame: &Frame, id: u64, code: ErrorCode) -> &ErrorBody {
    match frame {
        Frame::Error(e) if e.request_id == RequestId(id) && e.body.code == code => &e.body,
        other => panic!("expected ERROR {code:?} for call {id}, got {other:?}"),
    }
}

#[test]
fn a_late_result_is_answered_deadline_exceeded() {
    let now = Instant::now();
    let d = Duration::from_millis(100);
    let (mut m, input) = handshaken(now, &[(1, Some(d)), (2, Some(d)), (3, None)], 1 << 20);
    let finished = [
        Some(now + d - Duration::from_millis(1)),
        Some(now + d),
        None,
    ];
    let mut i = 0;
    let done = m.answer_calls(&input, now, usize::MAX, &mut Vec::new(), |_, _, out| {
        out.extend_from_slice(RESULT);
        i += 1;
        Answered::Reply {
            finished: finished[i - 1],
        }
    });
    assert_eq!((done.frames, done.consumed), (3, input.len()));
    let frames = sent_frames(&mut m);
    assert!(
        matches!(&frames[0], Frame::Reply(r) if r.request_id == RequestId(1) && &r.result[..] == RESULT)
    );
    error_body(&frames[1], 2, ErrorCode::DEADLINE_EXCEEDED);
    assert!(matches!(&frames[2], Frame::Reply(r) if r.request_id == RequestId(3)));
    assert_eq!(m.in_flight(), 0);
}

#[test]
fn a_result_over_the_peers_limit_fails_the_call_and_the_next_is_answered() {
    let now = Instant::now();
    let (mut m, input) = handshaken(now, &[(1, None), (2, None)], 4096);
    let mut first = true;
    let done = m.answer_calls(&input, now, usize::MAX, &mut Vec::new(), |_, _, out| {
        let len = if std::mem::take(&mut first) { 8192 } else { 2 };
        out.resize(len, b'x');
        Answered::Reply { finished: None }
    });
    assert_eq!(done.frames, 2);
    let frames = sent_frames(&mut m);
    let body = error_body(&frames[0], 1, ErrorCode::LIMIT_EXCEEDED);
    assert!(
        body.message.contains("cannot send the result"),
        "{}",
        body.message
    );
    assert!(
        matches!(&frames[1], Frame::Reply(r) if r.request_id == RequestId(2) && r.result.len() == 2)
    );
}

#[test]
fn a_declined_call_stays_and_a_later_one_is_in_flight() {
    let now = Instant::now();
    let d = Duration::from_secs(5);
    let (mut m, input) = handshaken(now, &[(1, None), (2, Some(d)), (3, None)], 1 << 20);
    // Declined: nothing taken, nothing sent, the call is still to be read.
    let done = m.answer_calls(&input, now, usize::MAX, &mut Vec::new(), |_, _, _| {
        Answered::Declined
    });
    assert_eq!((done.frames, done.consumed), (0, 0));
    assert!(!m.has_transmit());
    let c = m
        .accept_call(&input, now)
        .expect("the declined call is still acceptable");
    assert_eq!(c.request_id, RequestId(1));
    m.reply_slice(c.request_id, c.codec, RESULT).unwrap();
    let rest = &input[c.frame_len()..];
    // Later: the pass stops after it, the call in flight with its deadline.
    let done = m.answer_calls(rest, now, usize::MAX, &mut Vec::new(), |_, _, _| {
        Answered::Later
    });
    assert_eq!(done.frames, 1);
    assert_eq!(m.in_flight(), 1);
    assert_eq!(m.poll_timeout(), Some(now + d).min(m.poll_timeout()));
    m.handle_timeout(now + d).unwrap();
    assert!(matches!(
        m.poll_event(),
        Some(ServerEvent::Expired(RequestId(2)))
    ));
    m.reply_slice(RequestId(2), CodecId::POSTCARD, RESULT)
        .expect_err("a call past its deadline takes no reply");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_pass_and_call_by_call_agree(
        specs in proptest::collection::vec(any::<[u8; 8]>(), 0..40),
        cuts in proptest::collection::vec(any::<u8>(), 1..8),
        max in 1usize..6,
    ) {
        check_one_pass(&specs, &cuts, max);
    }
}
