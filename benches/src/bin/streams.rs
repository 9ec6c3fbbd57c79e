//! Streamed results against one call per item (issue 12, item 1).
//!
//! On one connection of one proxy, over tcp on 127.0.0.1 and over the in-memory transport:
//!
//! - **stream**: one call returning `n` small items (`u64`), read as a `RemoteStream`
//!   under credit flow control (window `--window`);
//! - **calls**: `--calls` calls of a method returning one `u64`, 64 in flight;
//! - **slow consumer**: a stream read 10x slower than the same stream read flat out: the
//!   items the producer yielded ahead of the consumer, at most, against the window;
//! - **upload**: the same `n` items sent by the caller as one call's argument stream
//!   (`Streaming<u64>`, SPEC §6.13) to a handler that sums them, under the server's credit
//!   (window `--upload-window`);
//! - **both ways**: a bidirectional stream: `n` items sent, each sent back as it arrives;
//! - **slow handler**: an argument stream read 10x slower than flat out: the items the
//!   caller produced ahead of the handler, at most, against the server's window.
//!
//! The ratio stream items/s ÷ calls/s is the figure (target ≥ 3); both rates come from the
//! same run, so a loaded machine moves both.
//!
//! ```text
//! cargo run --release -p wirecall-benches --bin streams -- --items 1000000 --calls 200000
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use wirecall::{CodecId, Engine, ItemStream, Proxy, Streaming};

const PROVIDER: u16 = 1;

#[derive(Parser, Debug)]
#[command(about = "Streamed results against one call per item")]
struct Args {
    /// Items of the streamed result.
    #[arg(long, default_value_t = 1_000_000)]
    items: u64,
    /// Calls of the one-call-per-item baseline.
    #[arg(long, default_value_t = 200_000)]
    calls: u64,
    /// Calls in flight in the baseline.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Stream window (items).
    #[arg(long, default_value_t = wirecall::DEFAULT_WINDOW)]
    window: u32,
    /// Items of the slow-consumer run.
    #[arg(long, default_value_t = 20_000)]
    slow_items: u64,
    /// Codec.
    #[arg(long, default_value = "postcard")]
    codec: String,
    /// The server's window for argument streams (items).
    #[arg(long, default_value_t = wirecall::DEFAULT_UPLOAD_WINDOW)]
    upload_window: u32,
}

#[derive(Default)]
struct Source {
    /// Items yielded by `watched` producers.
    produced: Arc<AtomicU64>,
    /// Items the caller's argument stream produced (the slow-handler run).
    uploaded: Arc<AtomicU64>,
}

#[wirecall::provider(service = "bench")]
impl Source {
    #[remote]
    fn count(&self, n: u64) -> ItemStream<u64> {
        ItemStream::iter(0..n)
    }

    #[remote]
    fn watched(&self, n: u64) -> ItemStream<u64> {
        let produced = self.produced.clone();
        ItemStream::iter((0..n).inspect(move |_| {
            produced.fetch_add(1, Ordering::Relaxed);
        }))
    }

    #[remote]
    fn item(&self, i: u64) -> u64 {
        i
    }

    #[remote]
    async fn sum(&self, items: Streaming<u64>) -> u64 {
        items.fold(0, |a, v| async move { a + v.unwrap() }).await
    }

    #[remote]
    fn echo(&self, items: Streaming<u64>) -> ItemStream<u64> {
        ItemStream::new(items.map(|v| v.unwrap()))
    }

    /// Reads the items at `per_item_ns` each (slept in batches of 100); returns the most
    /// items the caller produced ahead of this reader.
    #[remote]
    async fn slow_sum(&self, per_item_ns: u64, items: Streaming<u64>) -> u64 {
        let start = tokio::time::Instant::now();
        let mut items = items;
        let mut taken = 0u64;
        let mut most_ahead = 0u64;
        while let Some(v) = items.next().await {
            v.unwrap();
            taken += 1;
            if per_item_ns > 0 && taken % 100 == 0 {
                tokio::time::sleep_until(start + Duration::from_nanos(per_item_ns * taken)).await;
            }
            let ahead = self.uploaded.load(Ordering::SeqCst).saturating_sub(taken);
            most_ahead = most_ahead.max(ahead);
        }
        most_ahead
    }
}

struct Figures {
    transport: &'static str,
    stream_per_s: f64,
    calls_per_s: f64,
    flat_s: f64,
    slow_s: f64,
    most_ahead: u64,
    upload_per_s: f64,
    both_per_s: f64,
    slow_upload: f64,
    upload_most_ahead: u64,
}

async fn upload_rate(proxy: &Proxy, n: u64) -> f64 {
    let start = Instant::now();
    let total: u64 = proxy
        .call_on(PROVIDER, "bench_sum")
        .unwrap()
        .upload(futures::stream::iter(0..n))
        .call()
        .await
        .unwrap();
    assert_eq!(total, n * (n.saturating_sub(1)) / 2);
    n as f64 / start.elapsed().as_secs_f64()
}

async fn both_ways_rate(proxy: &Proxy, n: u64, window: u32) -> f64 {
    let start = Instant::now();
    let mut s = proxy
        .call_on(PROVIDER, "bench_echo")
        .unwrap()
        .window(window)
        .upload(futures::stream::iter(0..n))
        .stream::<u64>()
        .await
        .unwrap();
    let mut seen = 0u64;
    while let Some(item) = s.next().await {
        assert_eq!(item.unwrap(), seen);
        seen += 1;
    }
    assert_eq!(seen, n);
    n as f64 / start.elapsed().as_secs_f64()
}

/// Sends `n` items to a handler reading flat out, then to one reading 10x slower; returns
/// the slowdown and the most items the caller was ahead of the slow handler.
async fn slow_handler(proxy: &Proxy, src: &Source, n: u64) -> (f64, u64) {
    let run = |per_item_ns: u64| async move {
        src.uploaded.store(0, Ordering::SeqCst);
        let uploaded = src.uploaded.clone();
        let start = Instant::now();
        let most_ahead: u64 = proxy
            .call_on(PROVIDER, "bench_slow_sum")
            .unwrap()
            .arg(per_item_ns)
            .upload(futures::stream::iter(0..n).inspect(move |_| {
                uploaded.fetch_add(1, Ordering::SeqCst);
            }))
            .call()
            .await
            .unwrap();
        (start.elapsed().as_secs_f64(), most_ahead)
    };
    let (flat, _) = run(0).await;
    let per_item_ns = (flat * 10.0 / n as f64 * 1e9) as u64;
    let (slow, most_ahead) = run(per_item_ns).await;
    (slow / flat, most_ahead)
}

async fn stream_rate(proxy: &Proxy, n: u64, window: u32) -> f64 {
    let start = Instant::now();
    let s = proxy
        .call_on(PROVIDER, "bench_count")
        .unwrap()
        .arg(n)
        .window(window)
        .stream::<u64>()
        .await
        .unwrap();
    let mut seen = 0u64;
    let mut s = s;
    while let Some(item) = s.next().await {
        assert_eq!(item.unwrap(), seen);
        seen += 1;
    }
    assert_eq!(seen, n);
    n as f64 / start.elapsed().as_secs_f64()
}

async fn call_rate(proxy: &Proxy, n: u64, in_flight: usize) -> f64 {
    let client = SourceClient::new(proxy.clone(), PROVIDER);
    let start = Instant::now();
    let done: u64 = futures::stream::iter(0..n)
        .map(|i| {
            let client = &client;
            async move {
                assert_eq!(client.item(i).await.unwrap(), i);
                1u64
            }
        })
        .buffer_unordered(in_flight)
        .fold(0, |a, b| async move { a + b })
        .await;
    assert_eq!(done, n);
    n as f64 / start.elapsed().as_secs_f64()
}

/// Reads `n` items flat out, then again at a tenth of that pace; returns both durations
/// and the most items the producer was ahead of the slow consumer.
async fn slow_consumer(proxy: &Proxy, src: &Source, n: u64, window: u32) -> (f64, f64, u64) {
    let read = |pace: Option<Duration>| async move {
        src.produced.store(0, Ordering::SeqCst);
        let start = Instant::now();
        let mut s = proxy
            .call_on(PROVIDER, "bench_watched")
            .unwrap()
            .arg(n)
            .window(window)
            .stream::<u64>()
            .await
            .unwrap();
        let mut taken = 0u64;
        let mut most_ahead = 0u64;
        while let Some(item) = s.next().await {
            item.unwrap();
            taken += 1;
            if let Some(per_item) = pace {
                // The consumer's own work: the pace set, spent in batches of 100 items.
                if taken % 100 == 0 {
                    let until = start + per_item * taken as u32;
                    tokio::time::sleep_until(until.into()).await;
                }
            }
            let ahead = src.produced.load(Ordering::SeqCst).saturating_sub(taken);
            most_ahead = most_ahead.max(ahead);
        }
        (start.elapsed().as_secs_f64(), most_ahead)
    };
    let (flat, _) = read(None).await;
    let per_item = Duration::from_secs_f64(flat * 10.0 / n as f64);
    let (slow, most_ahead) = read(Some(per_item)).await;
    (flat, slow, most_ahead)
}

async fn measure(transport: &'static str, addr: &str, args: &Args, codec: CodecId) -> Figures {
    let engine = Engine::server(addr)
        .accept([codec])
        .upload_window(args.upload_window)
        .start()
        .await
        .expect("server");
    let src = Arc::new(Source::default());
    engine.register_arc(src.clone(), PROVIDER).unwrap();
    let proxy = Proxy::new(&engine.address()).unwrap().codec(codec);
    // Warm up the connection and both paths.
    stream_rate(&proxy, 10_000, args.window).await;
    call_rate(&proxy, 10_000, args.in_flight).await;
    // Interleaved halves, so load changes on the machine touch both alike.
    let s1 = stream_rate(&proxy, args.items / 2, args.window).await;
    let c1 = call_rate(&proxy, args.calls / 2, args.in_flight).await;
    let s2 = stream_rate(&proxy, args.items - args.items / 2, args.window).await;
    let c2 = call_rate(&proxy, args.calls - args.calls / 2, args.in_flight).await;
    let (flat_s, slow_s, most_ahead) =
        slow_consumer(&proxy, &src, args.slow_items, args.window).await;
    upload_rate(&proxy, 10_000).await;
    let u1 = upload_rate(&proxy, args.items / 2).await;
    let b1 = both_ways_rate(&proxy, args.items / 2, args.window).await;
    let u2 = upload_rate(&proxy, args.items - args.items / 2).await;
    let b2 = both_ways_rate(&proxy, args.items - args.items / 2, args.window).await;
    let (slow_upload, upload_most_ahead) = slow_handler(&proxy, &src, args.slow_items).await;
    engine.finalize().await;
    Figures {
        transport,
        stream_per_s: (s1 + s2) / 2.0,
        calls_per_s: (c1 + c2) / 2.0,
        flat_s,
        slow_s,
        most_ahead,
        upload_per_s: (u1 + u2) / 2.0,
        both_per_s: (b1 + b2) / 2.0,
        slow_upload,
        upload_most_ahead,
    }
}

fn main() {
    let args = Args::parse();
    let codec = CodecId::from_builtin_name(&args.codec)
        .unwrap_or_else(|| panic!("unknown codec `{}`", args.codec));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let figures = rt.block_on(async {
        vec![
            measure("tcp", "tcp://127.0.0.1:0", &args, codec).await,
            measure("mem", "mem://bench-streams", &args, codec).await,
        ]
    });
    println!(
        "{} items streamed (window {}) vs {} calls ({} in flight), codec {}, one connection:",
        args.items, args.window, args.calls, args.in_flight, args.codec
    );
    println!("| transport | stream items/s | calls/s | ratio | slow consumer: pace | most items ahead | window |");
    println!("|---|---|---|---|---|---|---|");
    for f in &figures {
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.1}x slower | {} | {} |",
            f.transport,
            f.stream_per_s,
            f.calls_per_s,
            f.stream_per_s / f.calls_per_s,
            f.slow_s / f.flat_s,
            f.most_ahead,
            args.window
        );
    }
    println!();
    println!(
        "The same items as one call's argument stream (server window {}), and both ways:",
        args.upload_window
    );
    println!("| transport | upload items/s | ratio to calls/s | both ways items/s | ratio to calls/s | slow handler: pace | most items ahead | server window |");
    println!("|---|---|---|---|---|---|---|---|");
    for f in &figures {
        println!(
            "| {} | {:.0} | {:.2}x | {:.0} | {:.2}x | {:.1}x slower | {} | {} |",
            f.transport,
            f.upload_per_s,
            f.upload_per_s / f.calls_per_s,
            f.both_per_s,
            f.both_per_s / f.calls_per_s,
            f.slow_upload,
            f.upload_most_ahead,
            args.upload_window
        );
    }
}
