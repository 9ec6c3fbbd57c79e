//! The streaming seed (Pyro's `streaming` example of remote iterators, tonic's client and
//! bidirectional streaming): a server method returns a stream read item by item under flow
//! control, another takes a stream of arguments, a third does both at once on one call.
//!
//! Run with `cargo run -p wirecall --example streams [address]`.

use futures::StreamExt;
use wirecall::{Engine, Error, ItemStream, Proxy, Streaming};

/// A small statistics service.
pub(crate) struct Stats;

#[wirecall::provider(service = "stats")]
impl Stats {
    /// The first `n` Fibonacci numbers, produced as the caller reads them (a remote
    /// iterator in Pyro's words).
    #[remote]
    fn fibonacci(&self, n: u32) -> ItemStream<u64> {
        ItemStream::iter(
            std::iter::successors(Some((0u64, 1u64)), |&(a, b)| Some((b, a + b)))
                .map(|(a, _)| a)
                .take(n as usize),
        )
    }

    /// The mean of the numbers the caller streams (a client → server stream).
    #[remote]
    async fn mean(&self, numbers: Streaming<f64>) -> Result<f64, Error> {
        let mut numbers = numbers;
        let (mut sum, mut n) = (0.0, 0u64);
        while let Some(x) = numbers.next().await {
            sum += x?;
            n += 1;
        }
        Ok(if n == 0 { 0.0 } else { sum / n as f64 })
    }

    /// The running total of the numbers the caller streams, sent back as each arrives (a
    /// bidirectional stream).
    #[remote]
    fn running_total(&self, numbers: Streaming<i64>) -> ItemStream<i64> {
        ItemStream::try_new(numbers.scan(0i64, |total, x| {
            let out = x.map(|x| {
                *total += x;
                *total
            });
            futures::future::ready(Some(out))
        }))
    }
}

/// What the seed observed.
#[derive(Debug, PartialEq)]
pub(crate) struct Observed {
    pub fibonacci: Vec<u64>,
    pub mean: f64,
    pub totals: Vec<i64>,
}

/// Runs the seed against a server listening on `address`.
pub(crate) async fn run(address: &str) -> Result<Observed, Error> {
    let engine = Engine::server(address).start().await?;
    engine.register_provider(Stats, 1)?;
    let stats = StatsClient::new(Proxy::new(&engine.address())?, 1);

    let mut fibonacci = Vec::new();
    let mut items = stats.fibonacci(10).await?;
    while let Some(x) = items.next().await {
        fibonacci.push(x?);
    }
    println!("fibonacci: {fibonacci:?}");

    let mean = stats
        .mean(futures::stream::iter([1.0, 2.0, 3.0, 4.0]))
        .await?;
    println!("mean: {mean}");

    let mut totals = Vec::new();
    let mut back = stats
        .running_total(futures::stream::iter([5i64, -2, 10]))
        .await?;
    while let Some(t) = back.next().await {
        totals.push(t?);
    }
    println!("running totals: {totals:?}");

    drop((items, back, stats));
    engine.finalize().await;
    Ok(Observed {
        fibonacci,
        mean,
        totals,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:0".to_string());
    let seen = run(&address).await?;
    assert_eq!(seen.fibonacci, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
    assert_eq!(seen.mean, 2.5);
    assert_eq!(seen.totals, [5, 3, 13]);
    Ok(())
}
