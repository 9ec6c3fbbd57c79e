//! The connection writer shared by both sides: one task per connection, write coalescing.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use wirecall_protocol as proto;

/// Largest batch written at once; more queued frames wait for the next write.
const MAX_BATCH: usize = 256 * 1024;

/// Writes every queued item, batching all items already queued into one write.
///
/// `convert` turns an item into a frame, or `None` to flush and close. The loop ends when
/// every sender is gone or the socket fails; the write half is then shut down.
pub(crate) async fn writer_loop<T>(
    mut wr: wirecall_transport::WriteHalf,
    mut rx: mpsc::UnboundedReceiver<T>,
    convert: fn(T) -> Option<proto::Frame>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut closing = false;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match convert(item) {
                Some(frame) => {
                    if let Err(e) = frame.encode(&mut buf) {
                        tracing::warn!("dropping a frame that cannot be encoded: {e}");
                    }
                }
                None => {
                    closing = true;
                    break;
                }
            }
            if buf.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
            if buf.capacity() > 4 * MAX_BATCH {
                buf = BytesMut::with_capacity(16 * 1024);
            }
        }
        if closing {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Encodes frames and writes them in one go (handshake frames, before the writer runs).
pub(crate) async fn write_frames(
    wr: &mut wirecall_transport::WriteHalf,
    frames: &[proto::Frame],
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    }
    wr.write_all(&buf).await?;
    wr.flush().await
}
