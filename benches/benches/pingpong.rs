//! The physical limit: a raw socket ping-pong of a 64-byte-payload CALL frame's worth of
//! bytes, over loopback TCP (TCP_NODELAY) and over a unix socket pair, with std sockets and
//! an echo thread. Every later latency target is measured against these round trips.
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use wirecall_protocol::{Annotations, Call, CodecId, Frame, Method, ProviderId, RequestId};

/// The bytes of the CALL frame the `frame` bench uses with a 64-byte payload.
fn frame_bytes() -> Vec<u8> {
    let frame = Frame::Call(Call {
        request_id: RequestId(1),
        provider: ProviderId(42),
        codec: CodecId::MSGPACK,
        oneway: false,
        upload: false,
        method: Method::new("my_service_say_hello").expect("valid method name"),
        annotations: Annotations::new(),
        args: Bytes::from(vec![0x5a; 64]),
        kwargs: Bytes::new(),
        attachment: Bytes::new(),
    });
    let mut b = BytesMut::new();
    frame.encode(&mut b).expect("encodable frame");
    b.to_vec()
}

/// Echoes `len`-byte messages until the peer closes.
fn echo<S: Read + Write>(mut s: S, len: usize) {
    let mut buf = vec![0u8; len];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

fn round_trip<S: Read + Write>(s: &mut S, msg: &[u8], buf: &mut [u8]) {
    s.write_all(msg).expect("write");
    s.read_exact(buf).expect("read");
}

fn benches(c: &mut Criterion) {
    let msg = frame_bytes();
    let len = msg.len();
    let mut g = c.benchmark_group(format!("pingpong/{len}B"));

    // Loopback TCP with TCP_NODELAY on both ends.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        echo(s, len);
    });
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; len];
    g.bench_function("tcp_loopback", |b| {
        b.iter(|| round_trip(&mut client, &msg, &mut buf))
    });
    client.shutdown(Shutdown::Both).ok();
    drop(client);
    server.join().expect("echo thread");

    // A unix socket pair (no file in the file system).
    let (mut a, b_end) = UnixStream::pair().expect("socketpair");
    let server = thread::spawn(move || echo(b_end, len));
    g.bench_function("unix_socketpair", |b| {
        b.iter(|| round_trip(&mut a, &msg, &mut buf))
    });
    a.shutdown(Shutdown::Both).ok();
    drop(a);
    server.join().expect("echo thread");
    g.finish();
}

criterion_group!(pingpong, benches);
criterion_main!(pingpong);
