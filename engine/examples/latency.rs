//! A quick latency check: small-call p50 through wirecall versus a raw tokio TCP ping-pong of
//! the same frame size, plus throughput with 64 calls in flight on one connection.
//!
//! Run with `cargo run --release -p wirecall --example latency [iterations]`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirecall::{CodecId, Engine, Error, Proxy};

/// The benchmark provider.
pub struct Bench;

#[wirecall::provider(service = "bench")]
impl Bench {
    /// Synchronous echo.
    #[remote]
    fn echo(&self, x: u64) -> u64 {
        x
    }

    /// Asynchronous echo.
    #[remote]
    async fn echo_async(&self, x: u64) -> u64 {
        x
    }
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

async fn raw_ping_pong(n: usize, size: usize) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; size];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = vec![7u8; size];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.write_all(&buf).await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        times.push(t.elapsed());
    }
    p50(times)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let engine = Engine::server("tcp://127.0.0.1:0").start().await?;
    engine.register_provider(Bench, 1)?;
    let proxy = Proxy::new(&engine.address())?.codec(CodecId::POSTCARD);
    let c = BenchClient::new(&proxy, 1);
    for i in 0..1000 {
        c.echo(i).await?;
    }
    let mut sync_t = Vec::with_capacity(n);
    let mut async_t = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        c.echo(i).await?;
        sync_t.push(t.elapsed());
        let t = Instant::now();
        c.echo_async(i).await?;
        async_t.push(t.elapsed());
    }
    let raw = raw_ping_pong(n, 56).await;
    let (ps, pa) = (p50(sync_t), p50(async_t));
    println!("raw tcp ping-pong p50: {raw:?}");
    println!(
        "wirecall sync handler p50: {ps:?} ({:.2}x raw)",
        ps.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "wirecall async handler p50: {pa:?} ({:.2}x raw)",
        pa.as_secs_f64() / raw.as_secs_f64()
    );

    // 64 in flight on one connection.
    let total = n * 4;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / 64 {
                c.echo((w * i) as u64).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Error::Config {
            message: format!("a caller task failed: {e}"),
        })??;
    }
    let el = t.elapsed();
    println!(
        "64 in flight, one connection: {:.0} calls/s",
        total as f64 / el.as_secs_f64()
    );
    engine.finalize().await;
    Ok(())
}
