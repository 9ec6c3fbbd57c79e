//! The RPyC service seed: only exposed members are reachable, `on_connect` /
//! `on_disconnect` hooks, one service instance per connection (from a factory) next to one
//! shared instance, and a service alias.
//!
//! Run with `cargo run -p wirecall --example rpyc_service [address]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wirecall::{ConnectionInfo, Engine, Error, Proxy};

/// Counts connections seen by every instance.
#[derive(Default)]
pub(crate) struct Stats {
    /// `on_connect` calls.
    pub connects: AtomicU64,
    /// `on_disconnect` calls.
    pub disconnects: AtomicU64,
}

/// An RPyC-style service: `exposed_*` members become `#[remote]` methods and attributes.
pub(crate) struct CounterService {
    count: AtomicU64,
    stats: Arc<Stats>,
}

impl CounterService {
    /// A fresh counter reporting to `stats`.
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        CounterService {
            count: AtomicU64::new(0),
            stats,
        }
    }

    /// Not exposed: reachable only from the server's own code.
    pub(crate) fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
    }
}

#[wirecall::provider(service = "counter", aliases = ["COUNTER"])]
impl CounterService {
    /// Exposed: adds `by` and returns the new count.
    #[remote]
    fn increment(&self, by: u64) -> u64 {
        self.count.fetch_add(by, Ordering::Relaxed) + by
    }

    /// Exposed attribute, readable and writable (Pyro's exposed property).
    #[attribute]
    fn value(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    #[attribute(set)]
    fn set_value(&self, value: u64) {
        self.count.store(value, Ordering::Relaxed);
    }

    #[on_connect]
    fn connected(&self, _info: &ConnectionInfo) {
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
    }

    #[on_disconnect]
    fn disconnected(&self, _info: &ConnectionInfo) {
        self.stats.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the seed observed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Per-connection counts after two increments on each of two connections.
    pub per_connection: (u64, u64),
    /// Shared counts seen by the same two connections.
    pub shared: (u64, u64),
    /// The "no such method" error text for an unexposed member.
    pub not_exposed: String,
}

/// Runs the seed against a server listening on `address`.
pub(crate) async fn run(address: &str) -> Result<Observed, Error> {
    let stats = Arc::new(Stats::default());
    let engine = Engine::server(address).start().await?;
    let s = stats.clone();
    // Provider 1: a service instance per connection, made by a factory (RPyC's class).
    engine.register_provider_factory(move || CounterService::new(s.clone()), 1)?;
    // Provider 2: one instance shared by all connections (RPyC's instance).
    let shared = Arc::new(CounterService::new(stats.clone()));
    engine.register_arc(shared.clone(), 2)?;
    let addr = engine.address();

    let a = CounterServiceClient::new(Proxy::new(&addr)?, 1);
    let b = CounterServiceClient::new(Proxy::new(&addr)?, 1);
    a.increment(1).await?;
    let pa = a.increment(1).await?;
    b.increment(5).await?;
    let pb = b.increment(5).await?;
    println!("per-connection counters: {pa} and {pb}");

    let sa = CounterServiceClient::new(a.proxy(), 2);
    let sb = CounterServiceClient::new(b.proxy(), 2);
    let s1 = sa.increment(1).await?;
    let s2 = sb.increment(1).await?;
    println!("shared counter seen as {s1} then {s2}");

    // Remote attributes.
    sa.set_value(100).await?;
    assert_eq!(sb.value().await?, 100);
    shared.reset();
    assert_eq!(sb.value().await?, 0);

    // The alias answers too.
    let via_alias: u64 = Engine::client()
        .register("COUNTER_increment")
        .on(a.proxy(), 2)
        .arg(3u64)
        .call()
        .await?;
    assert_eq!(via_alias, 3);

    // Unexposed members are unreachable and the error names what is exposed.
    let not_exposed = match a.proxy().call_on(1, "counter_reset")?.call::<()>().await {
        Err(e @ Error::NoSuchMethod { .. }) => e.to_string(),
        other => panic!("expected NoSuchMethod, got {other:?}"),
    };
    println!("{not_exposed}");

    // Closing the connections runs on_disconnect.
    drop((a, b, sa, sb));
    for _ in 0..200 {
        if stats.disconnects.load(Ordering::Relaxed) >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    println!(
        "on_connect ran {} times, on_disconnect {} times",
        stats.connects.load(Ordering::Relaxed),
        stats.disconnects.load(Ordering::Relaxed)
    );
    engine.finalize().await;
    Ok(Observed {
        per_connection: (pa, pb),
        shared: (s1, s2),
        not_exposed,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:0".to_string());
    let seen = run(&address).await?;
    assert_eq!(seen.per_connection, (2, 10));
    assert_eq!(seen.shared, (1, 2));
    Ok(())
}
