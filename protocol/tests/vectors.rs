//! Runs the byte-literal vectors of `conformance/vectors/frames/` (one per SPEC rule).

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::BytesMut;
use serde_json::{json, Value};
use wirecall_protocol::{
    ClientConfig, ClientConnection, ClientEvent, CodecId, CompressionId, Frame, FrameDecoder,
    Limits, ProtocolError, ServerConfig, ServerConnection, ServerEvent,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/vectors/frames")
}

fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ann(a: &wirecall_protocol::Annotations) -> Value {
    Value::Array(a.iter().map(|(k, v)| json!([k, hex::encode(v)])).collect())
}

fn ids(c: &[CodecId]) -> Value {
    json!(c.iter().map(|c| c.0).collect::<Vec<_>>())
}

fn limits_json(l: &Limits) -> Value {
    json!({"max_frame_len": l.max_frame_len, "max_annotations_len": l.max_annotations_len,
           "max_in_flight": l.max_in_flight})
}

/// Adds `extensions` (SPEC §6.1.1) to a HELLO or WELCOME notation when there are any.
fn with_extensions(mut v: Value, e: &wirecall_protocol::Extensions) -> Value {
    if !e.is_empty() {
        v["extensions"] = e
            .iter()
            .map(|(tag, value)| json!({"tag": tag.0, "value": hex::encode(value)}))
            .collect();
    }
    v
}

fn limits_from(v: Option<&Value>) -> Limits {
    match v {
        None => Limits::default(),
        Some(v) => Limits {
            max_frame_len: v["max_frame_len"].as_u64().unwrap() as u32,
            max_annotations_len: v["max_annotations_len"].as_u64().unwrap() as u32,
            max_in_flight: v["max_in_flight"].as_u64().unwrap() as u32,
        },
    }
}

/// The JSON notation of conformance/vectors/frames/README.md.
fn frame_json(f: &Frame) -> Value {
    match f {
        Frame::Hello(h) => with_extensions(
            json!({"kind": "HELLO", "versions": h.versions, "codecs": ids(&h.codecs),
            "limits": limits_json(&h.limits)}),
            &h.extensions,
        ),
        Frame::Welcome(w) => with_extensions(
            json!({"kind": "WELCOME", "version": w.version, "codec": w.codec.0,
            "accepted": ids(&w.accepted), "limits": limits_json(&w.limits)}),
            &w.extensions,
        ),
        Frame::Refuse(r) => json!({"kind": "REFUSE", "code": r.code.0, "versions": r.versions,
            "accepted": ids(&r.accepted), "message": r.message}),
        Frame::Call(c) => {
            let mut v = json!({"kind": "CALL", "request_id": c.request_id.0, "provider": c.provider.0,
            "codec": c.codec.0, "oneway": c.oneway, "method": c.method.as_str(),
            "annotations": ann(&c.annotations), "args": hex::encode(&c.args),
            "kwargs": hex::encode(&c.kwargs), "attachment": hex::encode(&c.attachment)});
            if c.upload {
                // Flag UPLOAD (SPEC §6.13): the key is present only when set.
                v["upload"] = json!(true);
            }
            v
        }
        Frame::Reply(r) => {
            json!({"kind": "REPLY", "request_id": r.request_id.0, "codec": r.codec.0,
            "stream": r.stream, "annotations": ann(&r.annotations), "result": hex::encode(&r.result),
            "attachment": hex::encode(&r.attachment)})
        }
        Frame::Error(e) => {
            json!({"kind": "ERROR", "request_id": e.request_id.0, "codec": e.codec.0,
            "annotations": ann(&e.annotations), "code": e.body.code.0, "type_name": e.body.type_name,
            "message": e.body.message, "trace": e.body.trace, "accepted": ids(&e.body.accepted),
            "names": e.body.names, "detail": hex::encode(&e.body.detail)})
        }
        Frame::Cancel(id) => json!({"kind": "CANCEL", "request_id": id.0}),
        Frame::StreamItem(s) => json!({"kind": "STREAM_ITEM", "request_id": s.request_id.0,
            "codec": s.codec.0, "annotations": ann(&s.annotations), "item": hex::encode(&s.item),
            "attachment": hex::encode(&s.attachment)}),
        Frame::StreamEnd(id) => json!({"kind": "STREAM_END", "request_id": id.0}),
        Frame::Credit(id, n) => json!({"kind": "CREDIT", "request_id": id.0, "credit": n}),
        Frame::Ping(d) => json!({"kind": "PING", "data": hex::encode(d)}),
        Frame::Pong(d) => json!({"kind": "PONG", "data": hex::encode(d)}),
        Frame::GoAway(g) => json!({"kind": "GOAWAY", "last_request_id": g.last_request_id.0,
            "code": g.code.0, "message": g.message}),
        other => panic!("no notation for {other:?}"),
    }
}

/// Decodes a whole stream given in `chunks`, then signals end of stream.
/// With `compression` (algorithm ids) in force, as after a handshake that agreed on them
/// (SPEC §6.9).
fn run(
    limits: Limits,
    compression: &[u8],
    chunks: &[&[u8]],
) -> (Vec<Frame>, Option<ProtocolError>) {
    let mut d = FrameDecoder::new(limits);
    d.set_compression(compression.iter().map(|&a| CompressionId(a)).collect());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    loop {
        match d.decode_eof(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

fn check_file(name: &str) -> usize {
    let file = load(name);
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty(), "{name} has no vectors");
    for v in vectors {
        let vname = v["name"].as_str().unwrap();
        let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
        let limits = limits_from(v.get("limits"));
        let expect_frames = v["frames"].as_array().unwrap();
        let expect_error = v["error"].as_str();
        let compression: Vec<u8> = v
            .get("compression")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| x.as_u64().unwrap() as u8).collect())
            .unwrap_or_default();

        let whole = run(limits, &compression, &[&bytes]);
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        let split = run(limits, &compression, &singles);
        for (how, (frames, err)) in [("whole", &whole), ("byte by byte", &split)] {
            let got: Vec<Value> = frames.iter().map(frame_json).collect();
            assert_eq!(&got, expect_frames, "{name}/{vname} ({how}): frames");
            assert_eq!(
                err.as_ref().map(|e| e.kind_name()),
                expect_error,
                "{name}/{vname} ({how}): error {err:?}"
            );
        }
        if !compression.is_empty() {
            // Decoded frames hold the inflated sections: they encode to other bytes.
            continue;
        }
        // The encoding is canonical: valid frames encode back to the same bytes.
        let mut out = BytesMut::new();
        for f in &whole.0 {
            f.encode(&mut out)
                .unwrap_or_else(|e| panic!("{name}/{vname}: encode: {e}"));
        }
        if expect_error.is_none() {
            assert_eq!(
                hex::encode(&out),
                hex::encode(&bytes),
                "{name}/{vname}: re-encoding"
            );
        } else {
            assert!(
                bytes.starts_with(&out),
                "{name}/{vname}: re-encoding the frames before the error"
            );
        }
    }
    vectors.len()
}

#[test]
fn kinds() {
    let n = check_file("kinds.json");
    // Every kind appears at least once.
    let file = load("kinds.json");
    let mut kinds: Vec<&str> = file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["frames"].as_array().unwrap())
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), 13, "{kinds:?}");
    assert!(n >= 13);
}

#[test]
fn flags() {
    check_file("flags.json");
}

#[test]
fn header() {
    check_file("header.json");
}

#[test]
fn limits() {
    check_file("limits.json");
}

#[test]
fn bodies() {
    check_file("bodies.json");
}

#[test]
fn annotations() {
    check_file("annotations.json");
}

#[test]
fn compression() {
    assert!(check_file("compression.json") >= 10);
}

fn partial_eq(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| partial_eq(av, ev))),
        (a, e) => a == e,
    }
}

fn sent_frames(bytes: Option<bytes::Bytes>) -> Vec<Value> {
    let Some(bytes) = bytes else {
        return Vec::new();
    };
    let big = Limits {
        max_frame_len: u32::MAX,
        max_annotations_len: u32::MAX,
        max_in_flight: 1,
    };
    let (frames, err) = run(big, &[], &[&bytes]);
    assert!(
        err.is_none(),
        "state machine sent undecodable bytes: {err:?}"
    );
    frames.iter().map(frame_json).collect()
}

fn check_sent(ctx: &str, got: &[Value], expected: &Value) {
    let expected = expected.as_array().unwrap();
    assert_eq!(
        got.len(),
        expected.len(),
        "{ctx}: sent {got:?}, expected {expected:?}"
    );
    for (g, e) in got.iter().zip(expected) {
        assert!(partial_eq(g, e), "{ctx}: sent {g}, expected {e}");
    }
}

fn server_event_name(e: &ServerEvent) -> &'static str {
    match e {
        ServerEvent::Connected(_) => "connected",
        ServerEvent::Call(_) => "call",
        ServerEvent::Cancelled(_) => "cancelled",
        ServerEvent::Expired(_) => "expired",
        ServerEvent::Rejected { .. } => "rejected",
        ServerEvent::Pong { .. } => "pong",
        ServerEvent::GoAway(_) => "goaway",
        ServerEvent::Drained => "drained",
        ServerEvent::Credit { .. } => "credit",
        ServerEvent::StreamItem(_) => "stream_item",
        ServerEvent::StreamEnd(_) => "stream_end",
        _ => "other",
    }
}

fn client_event_name(e: &ClientEvent) -> &'static str {
    match e {
        ClientEvent::Connected(_) => "connected",
        ClientEvent::Reply(_) => "reply",
        ClientEvent::StreamItem(_) => "stream_item",
        ClientEvent::StreamEnd(_) => "stream_end",
        ClientEvent::Error(_) => "error",
        ClientEvent::Failed { .. } => "failed",
        ClientEvent::Pong { .. } => "pong",
        ClientEvent::GoAway(_) => "goaway",
        ClientEvent::Drained => "drained",
        _ => "other",
    }
}

fn codec_list(v: &Value) -> Vec<CodecId> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| CodecId(c.as_u64().unwrap() as u8))
        .collect()
}

fn u8_list(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap() as u8)
        .collect()
}

#[test]
fn sessions() {
    let file = load("sessions.json");
    let sessions = file["sessions"].as_array().unwrap();
    let now = Instant::now();
    for s in sessions {
        let name = s["name"].as_str().unwrap();
        let cfg = &s["config"];
        let limits = limits_from(cfg.get("limits"));
        enum Conn {
            C(ClientConnection),
            S(ServerConnection),
        }
        let mut conn = match s["role"].as_str().unwrap() {
            "server" => {
                let mut c = ServerConfig::new(codec_list(&cfg["accepted"]));
                c.versions = u8_list(&cfg["versions"]);
                c.limits = limits;
                if let Some(w) = cfg.get("upload_window") {
                    c.support_uploads(w.as_u64().unwrap() as u32).unwrap();
                }
                Conn::S(ServerConnection::new(c, now).unwrap())
            }
            "client" => {
                let mut c = ClientConfig::new(codec_list(&cfg["codecs"]));
                c.versions = u8_list(&cfg["versions"]);
                c.limits = limits;
                let mut conn = ClientConnection::new(c, now).unwrap();
                let sent = sent_frames(conn.poll_transmit());
                check_sent(&format!("{name}: initial"), &sent, &s["initial_send"]);
                Conn::C(conn)
            }
            other => panic!("{name}: unknown role {other}"),
        };
        for (i, step) in s["steps"].as_array().unwrap().iter().enumerate() {
            let ctx = format!("{name} step {i}");
            let input = hex::decode(step["recv"].as_str().unwrap()).unwrap();
            let (result, sent, events) = match &mut conn {
                Conn::S(c) => {
                    let r = c.handle_input(&input, now);
                    let sent = sent_frames(c.poll_transmit());
                    let ev: Vec<&str> = std::iter::from_fn(|| c.poll_event())
                        .map(|e| server_event_name(&e))
                        .collect();
                    (r, sent, ev)
                }
                Conn::C(c) => {
                    let r = c.handle_input(&input, now);
                    let sent = sent_frames(c.poll_transmit());
                    let ev: Vec<&str> = std::iter::from_fn(|| c.poll_event())
                        .map(|e| client_event_name(&e))
                        .collect();
                    (r, sent, ev)
                }
            };
            assert_eq!(
                result.as_ref().err().map(|e| e.kind_name()),
                step["error"].as_str(),
                "{ctx}: result {result:?}"
            );
            check_sent(&ctx, &sent, &step["send"]);
            let expected: Vec<&str> = step["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap())
                .collect();
            assert_eq!(events, expected, "{ctx}: events");
        }
    }
}
