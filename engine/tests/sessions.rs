//! The session vectors of `conformance/vectors/frames/sessions.json` (generated from
//! protocol/SPEC.md by an independent encoder) run against the real engine, over tcp and
//! over `mem://`, not only against the state machines.
//!
//! Server vectors: an engine server with the vector's accepted set and limits, provider 1
//! exposing `m` (a handler that holds its call until the test ends, so the frames seen are
//! the connection rules' own); the vector's bytes are written to a raw socket, and what the
//! server sends back is compared with the vector, partially as the vectors say. A step that
//! sends nothing is checked by waiting briefly for nothing to arrive; a step that ends in an
//! error must end with the server closing the connection.
//!
//! Client vectors: a raw listener plays the server; a proxy connects to it (offering the
//! vector's codecs first) and the listener checks what the proxy sends after each step.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, Engine, Functions, Proxy};
use wirecall_protocol::{self as proto, Frame};

mod common;
use common::{raw_connect, RawIo};

/// How long a step waits for frames that must not come.
const QUIET: Duration = Duration::from_millis(150);
const LIMIT: Duration = Duration::from_secs(60);

fn sessions() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/vectors/frames/sessions.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["sessions"].as_array().unwrap().clone()
}

fn ids(c: &[proto::CodecId]) -> Value {
    c.iter().map(|c| c.0).collect()
}

fn limits_json(l: &proto::Limits) -> Value {
    json!({"max_frame_len": l.max_frame_len, "max_annotations_len": l.max_annotations_len,
        "max_in_flight": l.max_in_flight})
}

fn limits_from(v: Option<&Value>) -> proto::Limits {
    let d = proto::Limits::default();
    match v {
        None => d,
        Some(v) => proto::Limits {
            max_frame_len: v["max_frame_len"]
                .as_u64()
                .unwrap_or(d.max_frame_len.into()) as u32,
            max_annotations_len: v["max_annotations_len"]
                .as_u64()
                .unwrap_or(d.max_annotations_len.into()) as u32,
            max_in_flight: v["max_in_flight"]
                .as_u64()
                .unwrap_or(d.max_in_flight.into()) as u32,
        },
    }
}

/// A frame as the vectors describe it (the keys they may name).
fn frame_json(f: &Frame) -> Value {
    let kind = format!("{:?}", f.kind());
    match f {
        Frame::Hello(h) => json!({"kind": kind, "versions": h.versions, "codecs": ids(&h.codecs),
            "limits": limits_json(&h.limits)}),
        Frame::Welcome(w) => {
            let mut v = json!({"kind": kind, "version": w.version, "codec": w.codec.0,
            "accepted": ids(&w.accepted), "limits": limits_json(&w.limits)});
            if !w.extensions.is_empty() {
                v["extensions"] = w
                    .extensions
                    .iter()
                    .map(|(tag, value)| json!({"tag": tag.0, "value": hex::encode(value)}))
                    .collect();
            }
            v
        }
        Frame::Refuse(r) => json!({"kind": kind, "code": r.code.0, "versions": r.versions,
            "accepted": ids(&r.accepted)}),
        Frame::Error(e) => json!({"kind": kind, "request_id": e.request_id.0,
            "code": e.body.code.0, "accepted": ids(&e.body.accepted)}),
        Frame::GoAway(g) => json!({"kind": kind, "code": g.code.0,
            "last_request_id": g.last_request_id.0}),
        Frame::Ping(d) | Frame::Pong(d) => json!({"kind": kind, "data": hex::encode(d)}),
        other => json!({"kind": kind, "request_id": other.request_id().0}),
    }
}

fn partial_eq(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| partial_eq(av, ev))),
        (a, e) => a == e,
    }
}

/// The frames a peer sends, read as they come.
struct Peer {
    io: Box<dyn RawIo>,
    buf: BytesMut,
    dec: proto::FrameDecoder,
    closed: bool,
}

impl Peer {
    fn new(io: Box<dyn RawIo>) -> Peer {
        let mut dec = proto::FrameDecoder::new(proto::Limits {
            max_frame_len: u32::MAX,
            max_annotations_len: u32::MAX,
            max_in_flight: 1,
        });
        dec.set_reserve(true);
        Peer {
            io,
            buf: BytesMut::new(),
            dec,
            closed: false,
        }
    }

    /// Frames until `n` arrived, then whatever else arrives within [`QUIET`].
    async fn frames(&mut self, n: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            while let Ok(Some(f)) = self.dec.decode(&mut self.buf) {
                out.push(f);
            }
            if self.closed {
                return out;
            }
            let wait = if out.len() < n {
                Duration::from_secs(10)
            } else {
                QUIET
            };
            match tokio::time::timeout(wait, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(_)) => {}
                Err(_) => return out,
            }
        }
    }

    /// Whether the other side closes the connection (within 10 s).
    async fn closes(&mut self) -> bool {
        if self.closed {
            return true;
        }
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.io.read_to_end(&mut rest))
            .await
            .is_ok()
    }
}

fn check_sent(ctx: &str, got: &[Frame], expected: &Value) {
    let got: Vec<Value> = got.iter().map(frame_json).collect();
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

fn codecs(v: &Value) -> Vec<CodecId> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| CodecId::new(c.as_u64().unwrap() as u8))
        .collect()
}

async fn run_server_vector(s: &Value, transport: &str) {
    let name = s["name"].as_str().unwrap();
    let cfg = &s["config"];
    let addr = match transport {
        "tcp" => "tcp://127.0.0.1:0".to_string(),
        _ => format!("mem://sessions-{name}"),
    };
    let mut builder = Engine::server(addr);
    if let Some(w) = cfg.get("upload_window") {
        builder = builder.upload_window(w.as_u64().unwrap() as u32);
    }
    let engine = builder
        .accept(codecs(&cfg["accepted"]))
        .limits(limits_from(cfg.get("limits")))
        .idle_timeout(None)
        .grace_period(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    // Provider 1's `m` holds its call: the frames seen are the connection's own.
    engine
        .register_functions(
            Functions::new("").async_fn("m", &[], |(): ()| async {
                std::future::pending::<()>().await;
            }),
            1,
        )
        .unwrap();
    let mut peer = Peer::new(raw_connect(&engine.address()).await);
    for (i, step) in s["steps"].as_array().unwrap().iter().enumerate() {
        let ctx = format!("{name} over {transport}, step {i}");
        let input = hex::decode(step["recv"].as_str().unwrap()).unwrap();
        if peer.io.write_all(&input).await.is_err() {
            panic!("{ctx}: the server closed the connection before this step");
        }
        let expected = step["send"].as_array().unwrap().len();
        let got = peer.frames(expected).await;
        check_sent(&ctx, &got, &step["send"]);
        if step["error"].is_string() {
            assert!(
                peer.closes().await,
                "{ctx}: the error {} must close the connection",
                step["error"]
            );
        }
    }
    engine.finalize().await;
}

async fn run_client_vector(s: &Value, transport: &str) {
    let name = s["name"].as_str().unwrap();
    let cfg = &s["config"];
    let offered = codecs(&cfg["codecs"]);
    let (addr, accept): (String, _) = match transport {
        "tcp" => {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = format!("tcp://{}", l.local_addr().unwrap());
            (a, Listening::Tcp(l))
        }
        _ => {
            let a: wirecall_transport::Address = format!("mem://sessions-{name}").parse().unwrap();
            let l = wirecall_transport::Listener::bind(&a).await.unwrap();
            (l.local_addr().to_string(), Listening::Mem(l))
        }
    };
    let proxy = Proxy::new(&addr)
        .unwrap()
        .offer(offered.clone())
        .receive_limits(limits_from(cfg.get("limits")));
    let connecting = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.connect().await }
    });
    let mut peer = Peer::new(accept.accept().await);
    // The HELLO: the vector's codecs, versions and limits.
    let hello = peer.frames(1).await;
    check_sent(&format!("{name}: initial"), &hello, &s["initial_send"]);
    let mut connected: Option<tokio::task::JoinHandle<Result<(), wirecall::Error>>> =
        Some(connecting);
    for (i, step) in s["steps"].as_array().unwrap().iter().enumerate() {
        let ctx = format!("{name} over {transport}, step {i}");
        let input = hex::decode(step["recv"].as_str().unwrap()).unwrap();
        peer.io.write_all(&input).await.unwrap();
        // The handshake's outcome; after it, an idle proxy reads what arrived when it is
        // next used, so the runner looks at the connection until the frames came.
        let expected = step["send"].as_array().unwrap().len();
        let mut got = Vec::new();
        let outcome = match connected.take() {
            Some(h) => h.await.unwrap(),
            None => {
                for _ in 0..40 {
                    let _ = proxy.connect().await;
                    got.extend(peer.frames(0).await);
                    if got.len() >= expected && (expected > 0 || !proxy.is_connected()) {
                        break;
                    }
                }
                Ok(())
            }
        };
        let events: Vec<&str> = step["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        match step["error"].as_str() {
            Some(_) => {}
            None if i == 0 => assert!(outcome.is_ok(), "{ctx}: {outcome:?}"),
            None => {}
        }
        if step["error"].is_string() && i == 0 {
            assert!(outcome.is_err(), "{ctx}: the handshake must fail");
        }
        got.extend(peer.frames(expected.saturating_sub(got.len())).await);
        check_sent(&ctx, &got, &step["send"]);
        if step["error"].is_string() || events.contains(&"drained") {
            assert!(peer.closes().await, "{ctx}: the proxy must close");
            assert!(!proxy.is_connected(), "{ctx}: the proxy knows it is closed");
        } else {
            assert!(proxy.is_connected(), "{ctx}: still connected");
        }
    }
}

enum Listening {
    Tcp(tokio::net::TcpListener),
    Mem(wirecall_transport::Listener),
}

impl Listening {
    async fn accept(self) -> Box<dyn RawIo> {
        match self {
            Listening::Tcp(l) => Box::new(l.accept().await.unwrap().0),
            Listening::Mem(l) => {
                let (s, _) = l.accept().await.unwrap();
                let (r, w) = s.into_split();
                Box::new(tokio::io::join(r, w))
            }
        }
    }
}

async fn run_all(transport: &str) {
    let all = sessions();
    // Every vector runs; the floor catches a vector file that lost sessions.
    assert!(
        all.len() >= 41,
        "the vector file holds {} sessions",
        all.len()
    );
    let mut ran = 0;
    for s in &all {
        match s["role"].as_str().unwrap() {
            "server" => run_server_vector(s, transport).await,
            _ => run_client_vector(s, transport).await,
        }
        ran += 1;
    }
    assert_eq!(ran, all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_vectors_against_the_engine_over_tcp() {
    tokio::time::timeout(LIMIT, run_all("tcp")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_vectors_against_the_engine_over_mem() {
    tokio::time::timeout(LIMIT, run_all("mem")).await.unwrap();
}
