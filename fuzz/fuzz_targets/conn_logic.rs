//! The `connection` fuzz target's logic, shared by `fuzz_targets/connection.rs` (cargo-fuzz)
//! and `protocol/tests/fuzz_connection.rs` (proptest on stable, and the regression inputs).
//!
//! A client and a server state machine talk through two in-memory byte pipes. The input is
//! turned (with `arbitrary`) into a configuration and a sequence of operations, as quinn
//! fuzzes its connection: calls (owned and borrowed), cancels, answers (reply, stream,
//! error, answers to ids not in flight), pings, GOAWAY, shutdown with a grace, close, end of
//! stream, bytes delivered in arbitrary splits through each input method, transmit taken in
//! each way (chunks, swapped buffer, partial writes), time advancing and timers fired
//! (handshake, frame, idle, keep-alive, ping, call deadlines, drain grace), stream credit
//! (`wc.window` and CREDIT, SPEC §6.12), argument streams (flag UPLOAD, the client's items
//! and STREAM_END, the server's CREDIT, SPEC §6.13), and faults on the pipes (bytes
//! corrupted, dropped, duplicated or injected).
//!
//! Invariants checked after every operation, beyond "no panic":
//! - everything a side transmits decodes with a fresh [`FrameDecoder`] (no limits), ends
//!   on a frame boundary once all is taken, and follows the side's rules: HELLO or
//!   WELCOME/REFUSE first and once, CALL ids strictly increasing, no CALL after the client's
//!   GOAWAY, no answer to an id the server never received, never two final answers for one
//!   request id, stream items only inside an open stream, nothing after a fatal GOAWAY;
//! - client events: every answer is for a call made and not cancelled; no call is answered
//!   twice; `cancel` returns true exactly for calls still waiting; GOAWAY, Connected and
//!   Drained at most once, Drained only with nothing in flight;
//! - server events: Call ids strictly increasing and never after its own GOAWAY; Cancelled
//!   and Expired only for calls in flight; answering succeeds exactly for calls in flight
//!   (or fails on the peer's limits) and never twice;
//! - in-flight counts never exceed the server's limit; a closed side stays closed, refuses
//!   every operation and queues no more bytes; errors from input, timers and end of stream
//!   leave the side closed;
//! - timers: `handle_timeout` before `poll_timeout` changes nothing; after it fires the
//!   next deadline is in the future (no busy loop);
//! - without faults: what the server receives is exactly what the client sent (method,
//!   provider, codec, sections, argument items in order), replies carry what the server
//!   sent, neither side ever sees its credit broken (`flow_control`) by the other, and once
//!   every byte is delivered both sides agree on the handshake and every answer sent has
//!   reached the client.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use wirecall_protocol::{
    Annotations, CallRef, CallRequest, ClientConfig, ClientConnection, ClientEvent, CodecId,
    ErrorBody, ErrorCode, ErrorFrame, Frame, FrameDecoder, Limits, Method, ProtocolError,
    ProviderId, Reply, RequestId, ServerConfig, ServerConnection, ServerEvent, StreamItem,
};

/// At most this many operations per input, so every run is short.
const MAX_OPS: usize = 300;

const METHODS: [&str; 4] = [
    "m",
    "calc_add",
    "ünïcödé_méthod",
    "a_rather_long_method_name_0123456789",
];

#[derive(Arbitrary, Debug)]
struct Timers {
    handshake: Option<u16>,
    ping: Option<u16>,
    frame: Option<u16>,
    idle: Option<u16>,
    keepalive: Option<u16>,
}

fn ms(t: Option<u16>) -> Option<Duration> {
    t.map(|v| Duration::from_millis(u64::from(v % 4000)))
}

#[derive(Arbitrary, Debug)]
struct Setup {
    /// Raw codec ids the client offers (may include invalid ones).
    client_codecs: Vec<u8>,
    /// Which built-in codecs the server accepts (bit i = id i+1).
    server_codecs: u8,
    /// Offer version 2 only (no common version).
    client_bad_version: bool,
    server_max_in_flight: u8,
    client_max_in_flight: u8,
    server_small_frames: bool,
    client_small_frames: bool,
    max_annotations: u8,
    client_timers: Timers,
    server_timers: Timers,
    client_share: Option<u8>,
    server_share: Option<u8>,
    client_input: u8,
    server_input: u8,
    server_reserve: bool,
    /// Client → server streams: the client offers them, the server takes them with this
    /// window (`None`: not supported).
    client_uploads: bool,
    server_upload_window: Option<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Side {
    Client,
    Server,
}

#[derive(Arbitrary, Debug)]
enum Fault {
    Corrupt { to_server: bool, pos: u16, xor: u8 },
    Drop { to_server: bool, n: u16 },
    Duplicate { to_server: bool, n: u16 },
    Inject { to_server: bool, bytes: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Call {
        provider: u16,
        method: u8,
        codec: Option<u8>,
        oneway: bool,
        deadline_ms: Option<u16>,
        args_len: u16,
        kwargs_len: u8,
        attach_len: u16,
        user_annotation: Option<u8>,
        by_ref: bool,
        /// `wc.window` (SPEC §6.12).
        window: Option<u8>,
        /// Flag UPLOAD (SPEC §6.13; the owned call path only).
        upload: bool,
    },
    Cancel {
        pick: u8,
    },
    /// The client grants download credit (CREDIT c → s).
    Grant {
        pick: u8,
        n: u8,
    },
    /// The client sends an argument item.
    SendItem {
        pick: u8,
        len: u16,
    },
    /// The client ends an argument stream.
    EndUpload {
        pick: u8,
    },
    /// The server grants argument credit (CREDIT s → c).
    ServerGrant {
        pick: u8,
        n: u8,
    },
    Ping(Side),
    ClientGoAway,
    ServerGoAway,
    ServerShutdown {
        grace_ms: u16,
    },
    Close {
        side: Side,
        code: u32,
    },
    Reply {
        pick: u8,
        stream: bool,
        len: u16,
        codec: Option<u8>,
        annotation: bool,
        attach_len: u16,
    },
    StreamItem {
        pick: u8,
        len: u16,
    },
    StreamEnd {
        pick: u8,
    },
    Fail {
        pick: u8,
        code: u32,
        names: u8,
    },
    AnswerUnknown {
        id: u64,
        how: u8,
    },
    Flush {
        side: Side,
        how: u8,
        n: u16,
    },
    Deliver {
        to_server: bool,
        n: u16,
    },
    Advance {
        ms: u16,
    },
    AdvanceSecs {
        secs: u8,
    },
    FireTimers(Side),
    WakeAtTimeout(Side),
    Eof(Side),
    Fault(Fault),
}

/// Deterministic filler bytes for a section.
fn filler(len: usize, seed: u64) -> Bytes {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seed) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Checks the byte stream one side transmits.
struct WireCheck {
    client: bool,
    dec: FrameDecoder,
    pending: BytesMut,
    frames: usize,
    /// A fatal GOAWAY or a REFUSE was sent: nothing may follow.
    ended: bool,
    goaway: bool,
    last_call: RequestId,
    /// Ids with a final answer on the wire (server).
    finals: BTreeSet<RequestId>,
    /// Ids with an open stream (server).
    streams: BTreeSet<RequestId>,
    /// Results the server sent per id (REPLY result, then stream items), in order.
    sent_results: BTreeMap<RequestId, Vec<Bytes>>,
    /// Every CALL the client sent (id, oneway).
    calls: BTreeMap<RequestId, bool>,
    /// Calls the client sent with flag UPLOAD, and whether their STREAM_END went.
    uploads: BTreeMap<RequestId, bool>,
}

impl WireCheck {
    fn new(client: bool) -> WireCheck {
        WireCheck {
            client,
            dec: FrameDecoder::new(Limits {
                max_frame_len: u32::MAX,
                max_annotations_len: u32::MAX,
                max_in_flight: u32::MAX,
            }),
            pending: BytesMut::new(),
            frames: 0,
            ended: false,
            goaway: false,
            last_call: RequestId::NONE,
            finals: BTreeSet::new(),
            streams: BTreeSet::new(),
            sent_results: BTreeMap::new(),
            calls: BTreeMap::new(),
            uploads: BTreeMap::new(),
        }
    }

    /// Checks bytes taken from the side; `received` are the ids the server has seen.
    fn take(&mut self, bytes: &[u8], received: &BTreeMap<RequestId, SState>) {
        self.pending.extend_from_slice(bytes);
        loop {
            let f = match self.dec.decode(&mut self.pending) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => panic!("transmitted bytes do not decode: {e}"),
            };
            assert!(
                !self.ended,
                "frame {:?} after a fatal GOAWAY or REFUSE",
                f.kind()
            );
            let first = self.frames == 0;
            // A server answers a PING that came before HELLO (SPEC §10: before the
            // handshake it accepts HELLO, PING and PONG), so a PONG may precede its
            // WELCOME/REFUSE without being its first handshake frame.
            if self.client || !(first && matches!(f, Frame::Pong(_))) {
                self.frames += 1;
            }
            if self.client {
                self.client_frame(f, first);
            } else {
                self.server_frame(f, first, received);
            }
        }
    }

    fn client_frame(&mut self, f: Frame, first: bool) {
        assert_eq!(
            first,
            matches!(f, Frame::Hello(_)),
            "HELLO first and only first"
        );
        match f {
            Frame::Call(c) => {
                assert!(!self.goaway, "CALL after the client's GOAWAY");
                assert!(c.request_id > self.last_call, "CALL ids must increase");
                assert!(c.codec.is_codec());
                self.last_call = c.request_id;
                self.calls.insert(c.request_id, c.oneway);
                assert!(!(c.upload && c.oneway), "UPLOAD with ONEWAY");
                if c.upload {
                    self.uploads.insert(c.request_id, false);
                }
            }
            Frame::StreamItem(s) => {
                assert_eq!(
                    self.uploads.get(&s.request_id),
                    Some(&false),
                    "argument item for {:?}, not an open argument stream",
                    s.request_id
                );
            }
            Frame::StreamEnd(id) => {
                assert_eq!(
                    self.uploads.insert(id, true),
                    Some(false),
                    "STREAM_END for {id:?}, not an open argument stream"
                );
            }
            Frame::Credit(id, n) => {
                assert!(n >= 1);
                assert!(
                    self.calls.get(&id) == Some(&false),
                    "CREDIT for {id:?} never called"
                );
            }
            Frame::Cancel(id) => {
                assert!(
                    self.calls.get(&id) == Some(&false),
                    "CANCEL of {id:?} never called"
                )
            }
            Frame::GoAway(g) => {
                self.goaway = true;
                self.ended |= g.code != ErrorCode::NO_ERROR;
            }
            Frame::Hello(_) | Frame::Ping(_) | Frame::Pong(_) => {}
            other => panic!("client sent {:?}", other.kind()),
        }
    }

    fn server_frame(&mut self, f: Frame, first: bool, received: &BTreeMap<RequestId, SState>) {
        let handshake = matches!(f, Frame::Welcome(_) | Frame::Refuse(_));
        // A server that never got a HELLO may close with a GOAWAY as its first frame, and
        // answers a PING that came before HELLO (see `take`).
        if !matches!(f, Frame::GoAway(_) | Frame::Pong(_)) {
            assert_eq!(
                first,
                handshake,
                "WELCOME or REFUSE first and only first (got {:?})",
                f.kind()
            );
        }
        let answer = |id: RequestId, fin: bool, this: &mut WireCheck| {
            assert!(
                received.contains_key(&id),
                "answer to {id:?}, never received"
            );
            assert!(!this.finals.contains(&id), "{id:?} answered twice");
            if fin {
                this.finals.insert(id);
                this.streams.remove(&id);
            }
        };
        match f {
            Frame::Reply(r) => {
                assert!(
                    !self.streams.contains(&r.request_id),
                    "REPLY inside a stream"
                );
                answer(r.request_id, !r.stream, self);
                if r.stream {
                    self.streams.insert(r.request_id);
                }
                self.sent_results
                    .entry(r.request_id)
                    .or_default()
                    .push(r.result);
            }
            Frame::StreamItem(s) => {
                assert!(
                    self.streams.contains(&s.request_id),
                    "item outside a stream"
                );
                self.sent_results
                    .entry(s.request_id)
                    .or_default()
                    .push(s.item);
            }
            Frame::StreamEnd(id) => {
                assert!(self.streams.contains(&id), "STREAM_END outside a stream");
                answer(id, true, self);
            }
            Frame::Error(e) => answer(e.request_id, true, self),
            Frame::Credit(id, n) => {
                assert!(n >= 1);
                assert!(
                    received.contains_key(&id),
                    "CREDIT for {id:?}, never received"
                );
            }
            Frame::Refuse(_) => self.ended = true,
            Frame::GoAway(g) => {
                self.goaway = true;
                self.ended |= g.code != ErrorCode::NO_ERROR;
            }
            Frame::Welcome(_) | Frame::Ping(_) | Frame::Pong(_) => {}
            other => panic!("server sent {:?}", other.kind()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CState {
    Pending,
    Streaming,
    Cancelled,
    Done,
    Oneway,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SState {
    InFlight,
    Streaming,
    Done,
    Oneway,
    Rejected,
}

/// What the client asked for, to compare with what the server got.
#[derive(Debug)]
struct Sent {
    provider: ProviderId,
    method: String,
    codec: CodecId,
    oneway: bool,
    args: Bytes,
    kwargs: Bytes,
    attachment: Bytes,
    /// Argument items sent, in order (flag UPLOAD).
    items: Vec<Bytes>,
}

struct Pipe {
    bytes: Vec<u8>,
    faulty: bool,
}

struct Harness {
    now: Instant,
    client: ClientConnection,
    server: ServerConnection,
    client_input: u8,
    server_input: u8,
    client_buf: BytesMut,
    server_buf: BytesMut,
    c2s: Pipe,
    s2c: Pipe,
    cw: WireCheck,
    sw: WireCheck,
    // client model
    calls: BTreeMap<RequestId, CState>,
    sent: BTreeMap<RequestId, Sent>,
    client_items: BTreeMap<RequestId, usize>,
    client_connected: bool,
    client_goaway: bool,
    client_peer_goaway: bool,
    client_drained: bool,
    client_closed: bool,
    last_id: RequestId,
    // server model
    scalls: BTreeMap<RequestId, SState>,
    server_connected: bool,
    server_goaway_sent: bool,
    server_peer_goaway: bool,
    server_drained: bool,
    server_closed: bool,
    server_max_in_flight: usize,
    server_accepted: Vec<CodecId>,
    client_codecs: Vec<CodecId>,
    session_codec: Option<CodecId>,
    /// The argument items the server reported per call, counted.
    server_items: BTreeMap<RequestId, usize>,
    /// Calls whose argument stream the server saw end.
    server_upload_ended: BTreeSet<RequestId>,
}

/// Runs one fuzz input.
pub(crate) fn run(data: &[u8]) {
    run_with(data, false);
}

/// [`run`], printing the setup and each operation to stderr when `verbose` (to read what a
/// failing input does).
pub(crate) fn run_with(data: &[u8], verbose: bool) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    if verbose {
        eprintln!("{setup:?}");
    }
    let Some(mut h) = Harness::new(&setup) else {
        return;
    };
    let mut ops = 0;
    while !u.is_empty() && ops < MAX_OPS {
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        if verbose {
            eprintln!("{op:?}");
        }
        h.op(op);
        h.check();
        ops += 1;
    }
    h.finish();
}

fn limits(small: bool, in_flight: u8, ann: u8) -> Limits {
    Limits {
        max_frame_len: if small {
            Limits::MIN_FRAME_LEN
        } else {
            1 << 20
        },
        max_annotations_len: u32::from(ann) * 4,
        max_in_flight: u32::from(in_flight % 4) + 1,
    }
}

impl Harness {
    fn new(s: &Setup) -> Option<Harness> {
        let now = Instant::now();
        let client_codecs: Vec<CodecId> = s
            .client_codecs
            .iter()
            .take(4)
            .map(|&c| CodecId(c))
            .collect();
        let mut cc = ClientConfig::new(client_codecs.clone());
        if s.client_bad_version {
            cc.versions = vec![2];
        }
        cc.limits = limits(
            s.client_small_frames,
            s.client_max_in_flight,
            s.max_annotations,
        );
        cc.handshake_timeout = ms(s.client_timers.handshake);
        cc.ping_timeout = ms(s.client_timers.ping);
        cc.frame_timeout = ms(s.client_timers.frame);
        cc.keepalive = ms(s.client_timers.keepalive);
        cc.share_sections_from = s.client_share.map_or(usize::MAX, usize::from);
        if s.client_uploads {
            cc.offer_uploads();
        }
        let accepted: Vec<CodecId> = (0..7u8)
            .filter(|i| s.server_codecs & (1 << i) != 0)
            .map(|i| CodecId(i + 1))
            .collect();
        let mut sc = ServerConfig::new(accepted.clone());
        sc.limits = limits(
            s.server_small_frames,
            s.server_max_in_flight,
            s.max_annotations,
        );
        sc.handshake_timeout = ms(s.server_timers.handshake);
        sc.ping_timeout = ms(s.server_timers.ping);
        sc.frame_timeout = ms(s.server_timers.frame);
        sc.idle_timeout = ms(s.server_timers.idle);
        sc.keepalive = ms(s.server_timers.keepalive);
        sc.share_sections_from = s.server_share.map_or(usize::MAX, usize::from);
        sc.reserve_input = s.server_reserve;
        if let Some(w) = s.server_upload_window {
            sc.support_uploads(u32::from(w % 8) + 1).unwrap();
        }
        let server_max_in_flight = sc.limits.max_in_flight as usize;
        let client = ClientConnection::new(cc, now).ok()?;
        let server = match ServerConnection::new(sc, now) {
            Ok(s) => s,
            Err(_) => {
                assert!(accepted.is_empty(), "a valid server config was refused");
                return None;
            }
        };
        Some(Harness {
            now,
            client,
            server,
            client_input: s.client_input % 3,
            server_input: s.server_input % 3,
            client_buf: BytesMut::new(),
            server_buf: BytesMut::new(),
            c2s: Pipe {
                bytes: Vec::new(),
                faulty: false,
            },
            s2c: Pipe {
                bytes: Vec::new(),
                faulty: false,
            },
            cw: WireCheck::new(true),
            sw: WireCheck::new(false),
            calls: BTreeMap::new(),
            sent: BTreeMap::new(),
            client_items: BTreeMap::new(),
            client_connected: false,
            client_goaway: false,
            client_peer_goaway: false,
            client_drained: false,
            client_closed: false,
            last_id: RequestId::NONE,
            scalls: BTreeMap::new(),
            server_connected: false,
            server_goaway_sent: false,
            server_peer_goaway: false,
            server_drained: false,
            server_closed: false,
            server_max_in_flight,
            server_accepted: accepted,
            client_codecs,
            session_codec: None,
            server_items: BTreeMap::new(),
            server_upload_ended: BTreeSet::new(),
        })
    }

    fn faulty(&self) -> bool {
        self.c2s.faulty || self.s2c.faulty
    }

    /// Ids in the server model that are waiting for an answer.
    fn server_open(&self, streaming: bool) -> Vec<RequestId> {
        let want = if streaming {
            SState::Streaming
        } else {
            SState::InFlight
        };
        self.scalls
            .iter()
            .filter(|(_, s)| **s == want)
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick(ids: &[RequestId], pick: u8) -> Option<RequestId> {
        if ids.is_empty() {
            None
        } else {
            Some(ids[usize::from(pick) % ids.len()])
        }
    }

    fn op(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Call {
                provider,
                method,
                codec,
                oneway,
                deadline_ms,
                args_len,
                kwargs_len,
                attach_len,
                user_annotation,
                by_ref,
                window,
                upload,
            } => self.call(
                provider,
                method,
                codec,
                oneway,
                deadline_ms,
                args_len,
                kwargs_len,
                attach_len,
                user_annotation,
                by_ref,
                window,
                upload,
            ),
            Op::Grant { pick, n } => {
                let ids: Vec<RequestId> = self.calls.keys().copied().collect();
                let Some(id) = Self::pick(&ids, pick) else {
                    return;
                };
                let before = self.client.credit(id);
                match self.client.grant(id, u32::from(n)) {
                    Ok(true) => {
                        assert!(n >= 1 && before.is_some(), "grant accepted for {id:?}");
                        assert_eq!(self.client.credit(id), before.map(|c| c + u32::from(n)));
                    }
                    Ok(false) => {}
                    Err(_) => assert!(
                        n == 0 || before.is_none() || self.client.is_closed(),
                        "grant refused for {id:?} with credit {before:?}"
                    ),
                }
            }
            Op::SendItem { pick, len } => {
                let ids: Vec<RequestId> = self.sent.keys().copied().collect();
                let Some(id) = Self::pick(&ids, pick) else {
                    return;
                };
                let credit = self.client.upload_credit(id);
                let item = filler(usize::from(len % 3000), id.0 + 11);
                match self.client.send_item(StreamItem {
                    request_id: id,
                    codec: CodecId::JSON,
                    annotations: Annotations::new(),
                    item: item.clone(),
                    attachment: Bytes::new(),
                }) {
                    Ok(()) => {
                        assert!(
                            credit.is_some_and(|c| c > 0),
                            "item accepted for {id:?} with credit {credit:?}"
                        );
                        assert_eq!(self.client.upload_credit(id), credit.map(|c| c - 1));
                        self.sent.get_mut(&id).unwrap().items.push(item);
                    }
                    Err(ProtocolError::NoCredit { .. }) => assert_eq!(credit, Some(0)),
                    Err(e) => assert!(
                        credit.is_none()
                            || self.client.is_closed()
                            || matches!(e, ProtocolError::TooLong { .. }),
                        "item refused for {id:?} with credit {credit:?}: {e}"
                    ),
                }
            }
            Op::EndUpload { pick } => {
                let ids: Vec<RequestId> = self.sent.keys().copied().collect();
                let Some(id) = Self::pick(&ids, pick) else {
                    return;
                };
                let open = self.client.upload_credit(id).is_some();
                match self.client.end_upload(id) {
                    Ok(true) => {
                        assert!(open, "end accepted for {id:?}");
                        assert_eq!(self.client.upload_credit(id), None);
                    }
                    Ok(false) => assert!(!open),
                    Err(_) => assert!(!open || self.client.is_closed()),
                }
            }
            Op::ServerGrant { pick, n } => {
                let ids: Vec<RequestId> = self.scalls.keys().copied().collect();
                let Some(id) = Self::pick(&ids, pick) else {
                    return;
                };
                let before = self.server.upload_credit(id);
                match self.server.grant(id, u32::from(n)) {
                    Ok(true) => {
                        assert!(
                            n >= 1 && before.is_some(),
                            "server grant accepted for {id:?}"
                        );
                    }
                    Ok(false) => assert!(before.is_none()),
                    Err(_) => assert!(
                        n == 0
                            || self.server.is_closed()
                            || before.is_some_and(|b| b.checked_add(u32::from(n)).is_none())
                    ),
                }
            }
            Op::Cancel { pick } => {
                let ids: Vec<RequestId> = self.calls.keys().copied().collect();
                let id = Self::pick(&ids, pick).unwrap_or(RequestId(u64::from(pick)));
                let waiting = matches!(
                    self.calls.get(&id),
                    Some(CState::Pending | CState::Streaming)
                );
                match self.client.cancel(id) {
                    Ok(true) => {
                        assert!(
                            waiting,
                            "cancel of {id:?} in state {:?}",
                            self.calls.get(&id)
                        );
                        self.calls.insert(id, CState::Cancelled);
                    }
                    Ok(false) => assert!(!waiting, "cancel refused for a waiting call {id:?}"),
                    Err(_) => assert!(self.client.is_closed()),
                }
            }
            Op::Ping(Side::Client) => {
                if self.client.ping(now).is_err() {
                    assert!(self.client.is_closed());
                }
            }
            Op::Ping(Side::Server) => {
                // Not before the WELCOME: the server's first frame is the handshake's.
                if self.server.ping(now).is_err() {
                    assert!(self.server.is_closed() || !self.server_connected);
                }
            }
            Op::ClientGoAway => match self.client.goaway() {
                Ok(()) => {
                    assert!(self.client_connected);
                    self.client_goaway = true;
                }
                Err(_) => assert!(self.client.is_closed() || !self.client_connected),
            },
            Op::ServerGoAway => match self.server.goaway("bye") {
                Ok(()) => {
                    assert!(self.server_connected);
                    self.server_goaway_sent = true;
                }
                Err(_) => assert!(self.server.is_closed() || !self.server_connected),
            },
            Op::ServerShutdown { grace_ms } => {
                let grace = Duration::from_millis(u64::from(grace_ms % 3000));
                match self.server.shutdown("shutting down", now, grace) {
                    Ok(()) => {
                        if self.server_connected {
                            self.server_goaway_sent = true;
                        } else {
                            assert!(self.server.is_closed());
                        }
                    }
                    Err(_) => assert!(self.server.is_closed()),
                }
            }
            Op::Close { side, code } => match side {
                Side::Client => {
                    self.client.close(ErrorCode(code), "closing");
                    assert!(self.client.is_closed());
                }
                Side::Server => {
                    self.server.close(ErrorCode(code), "closing");
                    assert!(self.server.is_closed());
                }
            },
            Op::Reply {
                pick,
                stream,
                len,
                codec,
                annotation,
                attach_len,
            } => {
                let open = self.server_open(false);
                let streaming = self.server_open(true);
                let all: Vec<RequestId> = open.iter().chain(&streaming).copied().collect();
                let Some(id) = Self::pick(&all, pick) else {
                    return;
                };
                let annotations = if annotation {
                    Annotations::builder().insert("k", b"v").unwrap().build()
                } else {
                    Annotations::new()
                };
                let r = self.server.reply(Reply {
                    request_id: id,
                    codec: codec.map_or(CodecId::JSON, CodecId),
                    stream,
                    annotations,
                    result: filler(usize::from(len % 6000), id.0),
                    attachment: filler(usize::from(attach_len % 300), 7),
                });
                let was = self.scalls[&id];
                // A REPLY's codec is 1-254 (SPEC §3): any other is the caller's mistake.
                let valid = codec.is_none_or(|c| CodecId(c).is_codec());
                match r {
                    Ok(()) => {
                        assert!(valid, "reply with codec {codec:?} accepted");
                        assert_eq!(was, SState::InFlight, "reply accepted for {id:?}");
                        self.scalls.insert(
                            id,
                            if stream {
                                SState::Streaming
                            } else {
                                SState::Done
                            },
                        );
                    }
                    Err(e) => self.answer_refused(valid && was == SState::InFlight, &e),
                }
            }
            Op::StreamItem { pick, len } => {
                let all: Vec<RequestId> = self.scalls.keys().copied().collect();
                let Some(id) = Self::pick(&all, pick) else {
                    return;
                };
                let r = self.server.stream_item(
                    StreamItem {
                        request_id: id,
                        codec: CodecId::MSGPACK,
                        annotations: Annotations::new(),
                        item: filler(usize::from(len % 5000), id.0 + 1),
                        attachment: Bytes::new(),
                    },
                    self.now,
                );
                let ok = self.scalls[&id] == SState::Streaming;
                match r {
                    Ok(()) => assert!(ok, "stream item accepted for {id:?}"),
                    Err(e) => self.answer_refused(ok, &e),
                }
            }
            Op::StreamEnd { pick } => {
                let all: Vec<RequestId> = self.scalls.keys().copied().collect();
                let Some(id) = Self::pick(&all, pick) else {
                    return;
                };
                let ok = self.scalls[&id] == SState::Streaming;
                match self.server.stream_end(id) {
                    Ok(()) => {
                        assert!(ok, "stream end accepted for {id:?}");
                        self.scalls.insert(id, SState::Done);
                    }
                    Err(e) => self.answer_refused(ok, &e),
                }
            }
            Op::Fail { pick, code, names } => {
                let all: Vec<RequestId> = self.scalls.keys().copied().collect();
                let Some(id) = Self::pick(&all, pick) else {
                    return;
                };
                // Small codes often, so UNKNOWN_PROVIDER and UNKNOWN_METHOD come up.
                let code = ErrorCode(if code & 0x100 == 0 { code % 0x12 } else { code });
                let mut body = ErrorBody::new(code, "failed");
                body.names = (0..names % 4).map(|i| format!("name{i}")).collect();
                // Names go only with UNKNOWN_PROVIDER and UNKNOWN_METHOD (SPEC §7): any
                // other code with names is the caller's error, refused without sending.
                let names_ok = body.names.is_empty()
                    || code == ErrorCode::UNKNOWN_METHOD
                    || code == ErrorCode::UNKNOWN_PROVIDER;
                let ok =
                    names_ok && matches!(self.scalls[&id], SState::InFlight | SState::Streaming);
                let r = self.server.error(ErrorFrame {
                    request_id: id,
                    codec: CodecId::NONE,
                    annotations: Annotations::new(),
                    body,
                });
                match r {
                    Ok(()) => {
                        assert!(ok, "error accepted for {id:?}");
                        self.scalls.insert(id, SState::Done);
                    }
                    Err(e) => self.answer_refused(ok, &e),
                }
            }
            Op::AnswerUnknown { id, how } => {
                let id = RequestId(id);
                if matches!(
                    self.scalls.get(&id),
                    Some(SState::InFlight | SState::Streaming)
                ) {
                    return;
                }
                let r = match how % 3 {
                    0 => self.server.reply(Reply {
                        request_id: id,
                        codec: CodecId::JSON,
                        stream: false,
                        annotations: Annotations::new(),
                        result: Bytes::from_static(b"1"),
                        attachment: Bytes::new(),
                    }),
                    1 => self.server.stream_end(id),
                    _ => self.server.error(ErrorFrame {
                        request_id: id,
                        codec: CodecId::NONE,
                        annotations: Annotations::new(),
                        body: ErrorBody::new(ErrorCode::INTERNAL_ERROR, "x"),
                    }),
                };
                assert!(
                    r.is_err(),
                    "an answer to {id:?}, not in flight, was accepted"
                );
            }
            Op::Flush { side, how, n } => self.flush(side, how, usize::from(n)),
            Op::Deliver { to_server, n } => self.deliver(to_server, usize::from(n)),
            Op::Advance { ms } => self.now += Duration::from_millis(u64::from(ms)),
            Op::AdvanceSecs { secs } => self.now += Duration::from_secs(u64::from(secs % 120)),
            Op::FireTimers(side) => self.fire(side),
            Op::WakeAtTimeout(side) => {
                let t = match side {
                    Side::Client => self.client.poll_timeout(),
                    Side::Server => self.server.poll_timeout(),
                };
                if let Some(t) = t {
                    self.now = self.now.max(t);
                }
                self.fire(side);
            }
            Op::Eof(side) => self.eof(side),
            Op::Fault(f) => self.fault(f),
        }
    }

    /// An answer the server refused: fine unless the call was waiting for it and the
    /// error is neither the peer's limits nor a closed connection.
    fn answer_refused(&self, expected_ok: bool, e: &ProtocolError) {
        if expected_ok {
            assert!(
                self.server.is_closed()
                    || matches!(
                        e,
                        ProtocolError::TooLong { .. } | ProtocolError::NoCredit { .. }
                    ),
                "answer refused: {e}"
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        provider: u16,
        method: u8,
        codec: Option<u8>,
        oneway: bool,
        deadline_ms: Option<u16>,
        args_len: u16,
        kwargs_len: u8,
        attach_len: u16,
        user_annotation: Option<u8>,
        by_ref: bool,
        window: Option<u8>,
        upload: bool,
    ) {
        let method = METHODS[usize::from(method) % METHODS.len()];
        let mut ann = Annotations::builder();
        if let Some(d) = deadline_ms {
            ann = ann.deadline(Duration::from_millis(u64::from(d % 5000)));
        }
        if let Some(w) = window {
            ann = ann.window(u32::from(w % 8));
        }
        let by_ref = by_ref && !upload;
        if let Some(len) = user_annotation {
            ann = ann.insert("user", &filler(usize::from(len), 3)).unwrap();
        }
        let annotations = ann.build();
        let args = filler(usize::from(args_len % 6000), 1);
        let kwargs = filler(usize::from(kwargs_len), 2);
        let attachment = filler(usize::from(attach_len % 6000), 5);
        let in_flight_before = self.client.in_flight();
        let r = if by_ref {
            self.client.call_ref(
                CallRef {
                    request_id: RequestId(999),
                    provider: ProviderId(provider),
                    codec: codec.map_or(CodecId::NONE, CodecId),
                    oneway,
                    method,
                    annotations: &annotations,
                    args: &args,
                    kwargs: &kwargs,
                    attachment: &attachment,
                },
                self.now,
            )
        } else {
            self.client.call(
                CallRequest {
                    provider: ProviderId(provider),
                    method: Method::new(method).unwrap(),
                    codec: codec.map(CodecId),
                    oneway,
                    upload,
                    annotations,
                    args: args.clone(),
                    kwargs: kwargs.clone(),
                    attachment: attachment.clone(),
                },
                self.now,
            )
        };
        match r {
            Ok(id) => {
                assert!(self.client_connected, "call accepted before the handshake");
                assert!(!self.client_goaway, "call accepted after GOAWAY");
                assert!(id > self.last_id, "request ids must increase");
                // The limit the client applies is the one the WELCOME announced.
                assert!(oneway || self.s2c.faulty || in_flight_before < self.server_max_in_flight);
                self.last_id = id;
                let codec = match codec.map(CodecId) {
                    None | Some(CodecId::NONE) => self.session_codec.unwrap(),
                    Some(c) => c,
                };
                self.sent.insert(
                    id,
                    Sent {
                        provider: ProviderId(provider),
                        method: method.to_string(),
                        codec,
                        oneway,
                        args,
                        kwargs,
                        attachment,
                        items: Vec::new(),
                    },
                );
                assert!(!upload || !oneway, "a oneway upload was accepted");
                assert_eq!(
                    upload,
                    self.client.upload_credit(id).is_some(),
                    "upload credit of a new call {id:?}"
                );
                self.calls.insert(
                    id,
                    if oneway {
                        CState::Oneway
                    } else {
                        CState::Pending
                    },
                );
            }
            Err(_) => assert_eq!(self.client.in_flight(), in_flight_before),
        }
    }

    /// Takes transmit from a side into its pipe and checks it.
    fn flush(&mut self, side: Side, how: u8, n: usize) {
        let mut taken = Vec::new();
        let partial = match side {
            Side::Client => take(&mut self.client, how, n, &mut taken),
            Side::Server => take_server(&mut self.server, how, n, &mut taken),
        };
        let (w, pipe, has) = match side {
            Side::Client => (&mut self.cw, &mut self.c2s, self.client.has_transmit()),
            Side::Server => (&mut self.sw, &mut self.s2c, self.server.has_transmit()),
        };
        w.take(&taken, &self.scalls);
        if !has {
            assert!(
                w.pending.is_empty(),
                "all transmit taken but a frame is unfinished"
            );
        } else {
            assert!(partial, "transmit left after taking it all");
        }
        pipe.bytes.extend_from_slice(&taken);
    }

    fn deliver(&mut self, to_server: bool, n: usize) {
        let now = self.now;
        if to_server {
            let n = n.min(self.c2s.bytes.len());
            let chunk: Vec<u8> = self.c2s.bytes.drain(..n).collect();
            let r = match self.server_input {
                0 => self.server.handle_input(&chunk, now),
                1 => {
                    self.server_buf.extend_from_slice(&chunk);
                    self.server.handle_input_buf(&mut self.server_buf, now)
                }
                _ => {
                    self.server_buf.extend_from_slice(&chunk);
                    self.server
                        .handle_input_frames(&mut self.server_buf, now, (n % 3) + 1)
                        .map(|_| ())
                }
            };
            if let Err(e) = &r {
                assert!(self.server.is_closed(), "input error left the server open");
                assert!(
                    self.c2s.faulty || !matches!(e, ProtocolError::FlowControl { .. }),
                    "the client broke the server's credit: {e}"
                );
            }
        } else {
            let n = n.min(self.s2c.bytes.len());
            let chunk: Vec<u8> = self.s2c.bytes.drain(..n).collect();
            let mut fast = Vec::new();
            let r = match self.client_input {
                0 => self.client.handle_input(&chunk, now),
                1 => {
                    self.client_buf.extend_from_slice(&chunk);
                    self.client.handle_input_buf(&mut self.client_buf, now)
                }
                _ => {
                    self.client_buf.extend_from_slice(&chunk);
                    self.client
                        .handle_input_with(
                            &mut self.client_buf,
                            now,
                            n % 200,
                            (n % 4) + 1,
                            |id, codec, result| fast.push((id, codec, result.to_vec())),
                        )
                        .map(|_| ())
                }
            };
            for (id, _codec, result) in fast {
                self.client_answer(id, false, true, Some(&result));
            }
            if let Err(e) = &r {
                assert!(self.client.is_closed(), "input error left the client open");
                assert!(
                    self.s2c.faulty || !matches!(e, ProtocolError::FlowControl { .. }),
                    "the server broke the client's credit: {e}"
                );
            }
        }
    }

    /// Fires a side's timers at `now`, checking that early firing changes nothing and that
    /// firing moves the deadline past `now`.
    fn fire(&mut self, side: Side) {
        // Flush first, so new transmit is visible.
        self.flush(side, 0, 0);
        self.drain_events();
        let now = self.now;
        let due = match side {
            Side::Client => self.client.poll_timeout(),
            Side::Server => self.server.poll_timeout(),
        };
        let early = due.is_none_or(|t| now < t);
        let closed_before = self.is_closed(side);
        let mut rounds = 0;
        loop {
            let r = match side {
                Side::Client => self.client.handle_timeout(now),
                Side::Server => self.server.handle_timeout(now),
            };
            if r.is_err() {
                assert!(self.is_closed(side), "timer error left {side:?} open");
            }
            if early {
                assert!(
                    r.is_ok() || closed_before,
                    "a timer fired before poll_timeout"
                );
                let (events, transmit) = match side {
                    Side::Client => (self.client.has_events(), self.client.has_transmit()),
                    Side::Server => (self.server.has_events(), self.server.has_transmit()),
                };
                assert!(
                    !events && !transmit,
                    "handle_timeout before poll_timeout changed {side:?}"
                );
                break;
            }
            let next = match side {
                Side::Client => self.client.poll_timeout(),
                Side::Server => self.server.poll_timeout(),
            };
            if r.is_err() || next.is_none_or(|t| t > now) {
                break;
            }
            rounds += 1;
            // A zero-length timer (e.g. a ping timeout of 0 after a keep-alive PING) may
            // expire at once; it must then settle on the next call.
            assert!(rounds < 3, "poll_timeout stays at or before now: busy loop");
        }
        self.flush(side, 0, 0);
    }

    fn is_closed(&self, side: Side) -> bool {
        match side {
            Side::Client => self.client.is_closed(),
            Side::Server => self.server.is_closed(),
        }
    }

    fn eof(&mut self, side: Side) {
        match side {
            Side::Client => {
                let _ = if self.client_input == 0 {
                    self.client.handle_eof()
                } else {
                    self.client.handle_eof_buf(&self.client_buf)
                };
                assert!(
                    self.client.is_closed(),
                    "end of stream left the client open"
                );
            }
            Side::Server => {
                let _ = if self.server_input == 0 {
                    self.server.handle_eof()
                } else {
                    self.server.handle_eof_buf(&self.server_buf)
                };
                assert!(
                    self.server.is_closed(),
                    "end of stream left the server open"
                );
            }
        }
    }

    fn fault(&mut self, f: Fault) {
        fn pipe(h: &mut Harness, to_server: bool) -> &mut Pipe {
            if to_server {
                &mut h.c2s
            } else {
                &mut h.s2c
            }
        }
        match f {
            Fault::Corrupt {
                to_server,
                pos,
                xor,
            } => {
                let p = pipe(self, to_server);
                if xor != 0 && !p.bytes.is_empty() {
                    let i = usize::from(pos) % p.bytes.len();
                    p.bytes[i] ^= xor;
                    p.faulty = true;
                }
            }
            Fault::Drop { to_server, n } => {
                let p = pipe(self, to_server);
                let n = usize::from(n).min(p.bytes.len());
                if n > 0 {
                    p.bytes.drain(..n);
                    p.faulty = true;
                }
            }
            Fault::Duplicate { to_server, n } => {
                let p = pipe(self, to_server);
                let n = usize::from(n).min(p.bytes.len());
                if n > 0 {
                    let dup: Vec<u8> = p.bytes[..n].to_vec();
                    p.bytes.extend_from_slice(&dup);
                    p.faulty = true;
                }
            }
            Fault::Inject { to_server, bytes } => {
                let p = pipe(self, to_server);
                if !bytes.is_empty() {
                    p.bytes.extend_from_slice(&bytes);
                    p.faulty = true;
                }
            }
        }
    }

    /// A final or streamed answer reached the client.
    fn client_answer(&mut self, id: RequestId, stream: bool, fin: bool, result: Option<&[u8]>) {
        let state = self.calls.get(&id).copied();
        let next = match (state, stream, fin) {
            (Some(CState::Pending), true, false) => CState::Streaming,
            (Some(CState::Pending), false, true) => CState::Done,
            (Some(CState::Streaming), _, true) => CState::Done,
            (Some(CState::Streaming), true, false) => CState::Streaming,
            (s, _, _) => panic!("answer (stream {stream}, final {fin}) to {id:?} in state {s:?}"),
        };
        self.calls.insert(id, next);
        if let (Some(result), false) = (result, self.s2c.faulty) {
            let idx = self.client_items.entry(id).or_default();
            let sent = self.sw.sent_results.get(&id).and_then(|v| v.get(*idx));
            assert_eq!(
                sent.map(|b| &b[..]),
                Some(result),
                "result differs for {id:?}"
            );
            *idx += 1;
        }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            match e {
                ClientEvent::Connected(s) => {
                    assert!(!self.client_connected, "Connected twice");
                    assert!(self.client_codecs.contains(&s.codec));
                    if !self.s2c.faulty {
                        assert!(self.server_accepted.contains(&s.codec));
                        assert_eq!(s.accepted, self.server_accepted);
                    }
                    self.session_codec = Some(s.codec);
                    self.client_connected = true;
                }
                ClientEvent::Reply(r) => {
                    self.client_answer(r.request_id, r.stream, !r.stream, Some(&r.result))
                }
                ClientEvent::StreamItem(s) => {
                    self.client_answer(s.request_id, true, false, Some(&s.item))
                }
                ClientEvent::StreamEnd(id) => {
                    assert_eq!(self.calls.get(&id), Some(&CState::Streaming));
                    self.calls.insert(id, CState::Done);
                }
                ClientEvent::Error(e) => {
                    let s = self.calls.get(&e.request_id).copied();
                    assert!(
                        matches!(s, Some(CState::Pending | CState::Streaming)),
                        "ERROR for {:?} in state {s:?}",
                        e.request_id
                    );
                    self.calls.insert(e.request_id, CState::Done);
                }
                ClientEvent::Failed { request_id, .. } => {
                    let s = self.calls.get(&request_id).copied();
                    assert!(
                        matches!(s, Some(CState::Pending | CState::Streaming)),
                        "Failed for {request_id:?} in state {s:?}"
                    );
                    // Failed locally = cancelled: it counts in flight until the server's
                    // final frame, which is swallowed.
                    self.calls.insert(request_id, CState::Cancelled);
                }
                ClientEvent::GoAway(_) => {
                    assert!(!self.client_peer_goaway, "client GoAway twice");
                    self.client_peer_goaway = true;
                    self.client_goaway = true;
                }
                ClientEvent::Drained => {
                    assert!(!self.client_drained, "client Drained twice");
                    assert_eq!(self.client.in_flight(), 0, "Drained with calls in flight");
                    self.client_drained = true;
                }
                ClientEvent::Pong { .. } => {}
                ClientEvent::Credit { request_id, credit } => {
                    let s = self.calls.get(&request_id).copied();
                    assert!(
                        matches!(s, Some(CState::Pending | CState::Streaming)),
                        "argument credit for {request_id:?} in state {s:?}"
                    );
                    // A snapshot when it came: later CREDIT frames or items may have
                    // moved it since.
                    assert!(credit >= 1);
                }
                other => panic!("unexpected client event {other:?}"),
            }
        }
        while let Some(e) = self.server.poll_event() {
            match e {
                ServerEvent::Connected(s) => {
                    assert!(!self.server_connected, "server Connected twice");
                    assert!(self.server_accepted.contains(&s.codec));
                    self.server_connected = true;
                }
                ServerEvent::Call(c) => {
                    let id = c.request_id;
                    assert!(
                        !self.server_goaway_sent,
                        "Call {id:?} after the server's GOAWAY"
                    );
                    self.server_new_id(id);
                    self.scalls.insert(
                        id,
                        if c.oneway {
                            SState::Oneway
                        } else {
                            SState::InFlight
                        },
                    );
                    assert!(self.server.in_flight() <= self.server_max_in_flight);
                    if !self.c2s.faulty {
                        let s = self.sent.get(&id).expect("server got a call never made");
                        assert_eq!(s.provider, c.provider);
                        assert_eq!(s.method, c.method.as_str());
                        assert_eq!(s.codec, c.codec);
                        assert_eq!(s.oneway, c.oneway);
                        assert_eq!(s.args, c.args);
                        assert_eq!(s.kwargs, c.kwargs);
                        assert_eq!(s.attachment, c.attachment);
                    }
                }
                ServerEvent::Rejected { request_id, .. } => {
                    self.server_new_id(request_id);
                    self.scalls.insert(request_id, SState::Rejected);
                }
                ServerEvent::Cancelled(id) | ServerEvent::Expired(id) => {
                    let s = self.scalls.get(&id).copied();
                    assert!(
                        matches!(s, Some(SState::InFlight | SState::Streaming)),
                        "Cancelled/Expired {id:?} in state {s:?}"
                    );
                    self.scalls.insert(id, SState::Done);
                }
                ServerEvent::GoAway(_) => {
                    assert!(!self.server_peer_goaway, "server GoAway twice");
                    self.server_peer_goaway = true;
                }
                ServerEvent::Drained => {
                    assert!(!self.server_drained, "server Drained twice");
                    assert_eq!(self.server.in_flight(), 0, "Drained with calls in flight");
                    self.server_drained = true;
                }
                ServerEvent::Pong { .. } => {}
                ServerEvent::Credit { request_id, credit } => {
                    let s = self.scalls.get(&request_id).copied();
                    assert!(
                        matches!(s, Some(SState::InFlight | SState::Streaming)),
                        "credit for {request_id:?} in state {s:?}"
                    );
                    assert!(credit >= 1);
                }
                ServerEvent::StreamItem(item) => {
                    let id = item.request_id;
                    let s = self.scalls.get(&id).copied();
                    assert!(
                        matches!(s, Some(SState::InFlight | SState::Streaming)),
                        "argument item for {id:?} in state {s:?}"
                    );
                    assert!(
                        !self.server_upload_ended.contains(&id),
                        "argument item for {id:?} after its end"
                    );
                    let n = self.server_items.entry(id).or_default();
                    if !self.c2s.faulty {
                        let sent = self.sent.get(&id).and_then(|s| s.items.get(*n));
                        assert_eq!(
                            sent.map(|b| &b[..]),
                            Some(&item.item[..]),
                            "argument item {n} of {id:?} differs"
                        );
                    }
                    *n += 1;
                }
                ServerEvent::StreamEnd(id) => {
                    let s = self.scalls.get(&id).copied();
                    assert!(
                        matches!(s, Some(SState::InFlight | SState::Streaming)),
                        "argument stream end for {id:?} in state {s:?}"
                    );
                    assert!(
                        self.server_upload_ended.insert(id),
                        "argument stream of {id:?} ended twice"
                    );
                }
                other => panic!("unexpected server event {other:?}"),
            }
        }
    }

    fn server_new_id(&self, id: RequestId) {
        assert!(
            !self.scalls.contains_key(&id),
            "{id:?} seen twice by the server"
        );
        if let Some((last, _)) = self.scalls.last_key_value() {
            assert!(id > *last, "server ids must increase");
        }
    }

    /// Checks after every operation.
    fn check(&mut self) {
        self.drain_events();
        let in_flight = self.server.in_flight();
        assert!(
            in_flight <= self.server_max_in_flight,
            "server over its limit"
        );
        let open = self
            .scalls
            .values()
            .filter(|s| matches!(s, SState::InFlight | SState::Streaming))
            .count();
        assert_eq!(
            in_flight, open,
            "server in_flight disagrees with its events"
        );
        assert!(self.s2c.faulty || self.client.in_flight() <= self.server_max_in_flight);
        let waiting = self
            .calls
            .values()
            .filter(|s| matches!(s, CState::Pending | CState::Streaming | CState::Cancelled))
            .count();
        assert!(
            self.client.in_flight() <= waiting,
            "client in_flight too high"
        );
        for side in [Side::Client, Side::Server] {
            let (was, is) = match side {
                Side::Client => (self.client_closed, self.client.is_closed()),
                Side::Server => (self.server_closed, self.server.is_closed()),
            };
            assert!(!was || is, "{side:?} reopened");
            if was {
                let t = match side {
                    Side::Client => self.client.has_transmit(),
                    Side::Server => self.server.has_transmit(),
                };
                assert!(!t, "{side:?} queued bytes after it closed");
                let now = self.now;
                match side {
                    Side::Client => {
                        assert!(self.client.poll_timeout().is_none());
                        assert!(self.client.ping(now).is_err());
                        assert!(self.client.handle_timeout(now).is_err());
                        assert!(self.client.handle_input(&[], now).is_err());
                    }
                    Side::Server => {
                        assert!(self.server.poll_timeout().is_none());
                        assert!(self.server.ping(now).is_err());
                        assert!(self.server.goaway("x").is_err());
                        assert!(self.server.handle_timeout(now).is_err());
                    }
                }
            } else if is {
                // Just closed: what it queued (a GOAWAY) goes out now.
                self.flush(side, 0, 0);
                match side {
                    Side::Client => self.client_closed = true,
                    Side::Server => self.server_closed = true,
                }
            }
        }
    }

    /// Without faults, delivers everything both ways until quiet and checks that both sides
    /// agree.
    fn finish(&mut self) {
        if self.faulty() {
            return;
        }
        // Frames a frame budget left in a driver buffer are handled by later rounds.
        for _ in 0..5000 {
            self.flush(Side::Client, 0, 0);
            self.flush(Side::Server, 0, 0);
            let quiet = self.c2s.bytes.is_empty()
                && self.s2c.bytes.is_empty()
                && (self.client_buf.is_empty() || self.client.is_closed())
                && (self.server_buf.is_empty() || self.server.is_closed());
            if quiet {
                break;
            }
            let (a, b) = (self.c2s.bytes.len(), self.s2c.bytes.len());
            self.deliver(true, a);
            self.deliver(false, b);
            self.check();
        }
        self.check();
        if self.client.is_closed() || self.server.is_closed() {
            return;
        }
        // Both open after a full exchange: the handshake completed on both sides.
        assert!(
            self.client_connected && self.server_connected,
            "handshake incomplete"
        );
        // Every call the client sent reached the server.
        for id in self.cw.calls.keys() {
            assert!(
                self.scalls.contains_key(id),
                "{id:?} sent but never received"
            );
        }
        // Every final answer the server sent reached the client.
        for id in &self.sw.finals {
            let s = self.calls.get(id).copied();
            assert!(
                matches!(s, Some(CState::Done | CState::Cancelled)),
                "{id:?} answered but the client has it {s:?}"
            );
        }
    }
}

fn take(c: &mut ClientConnection, how: u8, n: usize, out: &mut Vec<u8>) -> bool {
    match how % 3 {
        0 => {
            while let Some(b) = c.poll_transmit() {
                out.extend_from_slice(&b);
            }
            false
        }
        1 => {
            let mut dst = BytesMut::new();
            c.take_transmit(&mut dst);
            out.extend_from_slice(&dst);
            false
        }
        _ => {
            let buf = c.transmit_buf();
            let n = n.min(buf.len());
            out.extend_from_slice(&buf[..n]);
            c.advance_transmit(n);
            true
        }
    }
}

fn take_server(c: &mut ServerConnection, how: u8, n: usize, out: &mut Vec<u8>) -> bool {
    match how % 3 {
        0 => {
            while let Some(b) = c.poll_transmit() {
                out.extend_from_slice(&b);
            }
            false
        }
        1 => {
            // Appending to a non-empty buffer takes the copying path.
            let mut dst = BytesMut::from(&b"x"[..]);
            c.take_transmit(&mut dst);
            out.extend_from_slice(&dst[1..]);
            false
        }
        _ => {
            let buf = c.transmit_buf();
            let n = n.min(buf.len());
            out.extend_from_slice(&buf[..n]);
            c.advance_transmit(n);
            true
        }
    }
}
