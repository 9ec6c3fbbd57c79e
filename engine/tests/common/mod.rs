//! Helpers shared by the engine tests that talk to a server with raw frames.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use wirecall_protocol as proto;

/// Sets its flag when dropped: tells a test that a handler's future was dropped (stopped).
pub(crate) struct SetOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A raw byte stream to a server.
pub(crate) trait RawIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawIo for T {}

/// A raw connection to `addr` (`tcp://`, `unix://` or `mem://`), no handshake.
pub(crate) async fn raw_connect(addr: &str) -> Box<dyn RawIo> {
    let a: wirecall_transport::Address = addr.parse().unwrap();
    let s = wirecall_transport::Stream::connect(&a).await.unwrap();
    let (r, w) = s.into_split();
    Box::new(tokio::io::join(r, w))
}

/// Every complete frame in `bytes`, up to the first that does not decode.
pub(crate) fn decode_all(bytes: &[u8]) -> Vec<proto::Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = proto::FrameDecoder::default();
    let mut out = Vec::new();
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        out.push(f);
    }
    out
}

/// One frame's bytes.
pub(crate) fn encode(f: &proto::Frame) -> BytesMut {
    let mut b = BytesMut::new();
    f.encode(&mut b).unwrap();
    b
}

/// Reads frames until `n` have arrived, or the peer closes; bytes of a frame not yet
/// complete stay in `buf` for the next call.
pub(crate) async fn read_frames(
    io: &mut Box<dyn RawIo>,
    buf: &mut BytesMut,
    n: usize,
) -> Vec<proto::Frame> {
    let mut dec = proto::FrameDecoder::default();
    let mut out = Vec::new();
    loop {
        while let Ok(Some(f)) = dec.decode(buf) {
            out.push(f);
        }
        if out.len() >= n || io.read_buf(buf).await.unwrap_or(0) == 0 {
            return out;
        }
    }
}
