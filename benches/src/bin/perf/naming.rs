//! `perf --profile naming`: what naming costs, beside a plain call measured in the same run
//! on the same loopback server.
//!
//! - lookups/s through the embedded name server (a [`RemoteNaming`] client over one
//!   connection: one at a time, and 64 in flight), and of the embedded store in process;
//! - the first call of a new proxy: `Proxy::new(address)` + call (connect, handshake, call)
//!   against `Proxy::new("name:...")` + call (lookup, connect, handshake, call), the
//!   difference being the resolution's cost;
//! - later calls of the resolved proxy against a direct proxy's (the resolution is cached:
//!   the ratio should be 1).
//!
//! Each pair is measured in alternating rounds (A, B, A, B, ...) and reported as the
//! median of the rounds, so drift on a shared machine hits both sides alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wirecall::naming::{Announce, EmbeddedStore, NamingBackend, Registration, RemoteNaming};
use wirecall::{Engine, Functions, Proxy};

/// How many alternating rounds each pair gets.
const ROUNDS: usize = 5;

/// Calls in flight for the throughput pair.
const INFLIGHT: usize = 64;

/// Runs `f` from [`INFLIGHT`] tasks at once for `budget`; returns completions per second.
async fn per_s_inflight<F, Fut>(budget: Duration, f: F) -> Result<f64, String>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..INFLIGHT {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < budget {
                f(n).await?;
                n += 1;
            }
            Ok::<u64, String>(n)
        }));
    }
    let mut done = 0u64;
    for t in tasks {
        done += t.await.map_err(|e| e.to_string())??;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// The figures of one run.
pub(crate) struct NamingFigures {
    /// Mean µs of a plain call on a connected proxy.
    call_us: f64,
    /// Mean µs of a lookup through the name server.
    lookup_us: f64,
    /// Plain calls/s with [`INFLIGHT`] in flight on one connection.
    calls_per_s_inflight: f64,
    /// Lookups/s with [`INFLIGHT`] in flight on one connection.
    lookups_per_s_inflight: f64,
    /// Mean µs of a lookup in the embedded store, in process.
    store_lookup_us: f64,
    /// Mean µs of a fresh `name:` proxy's resolution alone (`Proxy::resolve`).
    resolve_us: f64,
    /// Mean µs of a plain call, paired with `resolve_us`.
    resolve_call_us: f64,
    /// Mean µs of a new direct proxy's first call.
    first_direct_us: f64,
    /// Mean µs of a new named proxy's first call.
    first_named_us: f64,
    /// Mean µs of a resolved named proxy's later calls.
    later_named_us: f64,
    /// Mean µs of a direct proxy's calls, paired with `later_named_us`.
    later_direct_us: f64,
}

async fn echo(p: &Proxy, n: u64) -> Result<u64, String> {
    p.call_on(1, "bench_echo")
        .map_err(|e| e.to_string())?
        .arg(n)
        .call::<u64>()
        .await
        .map_err(|e| e.to_string())
}

/// Runs `f` repeatedly for `budget`; returns the mean µs per run.
async fn mean_us<F, Fut>(budget: Duration, mut f: F) -> Result<f64, String>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget || n == 0 {
        f(n).await?;
        n += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measures `a` and `b` in alternating rounds; returns their medians.
async fn paired<FA, FB, FutA, FutB>(
    budget: Duration,
    mut a: FA,
    mut b: FB,
) -> Result<(f64, f64), String>
where
    FA: FnMut(u64) -> FutA,
    FB: FnMut(u64) -> FutB,
    FutA: std::future::Future<Output = Result<(), String>>,
    FutB: std::future::Future<Output = Result<(), String>>,
{
    let round = budget / ROUNDS as u32;
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ra.push(mean_us(round, &mut a).await?);
        rb.push(mean_us(round, &mut b).await?);
    }
    Ok((median(ra), median(rb)))
}

/// Runs the naming figures on `rt`, `duration` per pair.
pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    duration: Duration,
    progress: bool,
) -> Result<NamingFigures, String> {
    rt.block_on(async {
        let err = |e: wirecall::Error| e.to_string();
        let ns = Engine::server("tcp://127.0.0.1:0")
            .start()
            .await
            .map_err(err)?;
        ns.host_name_server(Arc::new(EmbeddedStore::in_memory().map_err(err)?))
            .await
            .map_err(err)?;
        let names: Arc<dyn NamingBackend> =
            Arc::new(RemoteNaming::new(&ns.address()).map_err(err)?);
        let server = Engine::server("tcp://127.0.0.1:0")
            .announce(names.clone(), [Announce::new("bench.echo", 1)])
            .start()
            .await
            .map_err(err)?;
        server
            .register_functions(
                Functions::new("bench").sync_fn("echo", &["n"], |(n,): (u64,)| n),
                1,
            )
            .map_err(err)?;
        let address = server.address();
        let store = EmbeddedStore::in_memory().map_err(err)?;
        store
            .register(Registration::new("bench.echo", address.clone()), false)
            .await
            .map_err(err)?;

        if progress {
            eprintln!("naming: plain calls against name server lookups...");
        }
        let direct = Proxy::new(&address).map_err(err)?;
        echo(&direct, 0).await?;
        let (call_us, lookup_us) = paired(
            duration,
            |n| {
                let p = direct.clone();
                async move { echo(&p, n).await.map(drop) }
            },
            |_| {
                let names = names.clone();
                async move { names.lookup("bench.echo").await.map(drop).map_err(err) }
            },
        )
        .await?;
        let round = duration / ROUNDS as u32;
        let (mut calls, mut lookups) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let p = direct.clone();
            calls.push(
                per_s_inflight(round, move |n| {
                    let p = p.clone();
                    async move { echo(&p, n).await.map(drop) }
                })
                .await?,
            );
            let b = names.clone();
            lookups.push(
                per_s_inflight(round, move |_| {
                    let b = b.clone();
                    async move { b.lookup("bench.echo").await.map(drop).map_err(err) }
                })
                .await?,
            );
        }
        let calls_per_s_inflight = median(calls);
        let lookups_per_s_inflight = median(lookups);
        let store_lookup_us = mean_us(duration / ROUNDS as u32, |_| {
            let f = store.lookup("bench.echo");
            async move { f.await.map(drop).map_err(err) }
        })
        .await?;

        if progress {
            eprintln!("naming: a fresh proxy's resolution against a plain call...");
        }
        let (resolve_us, resolve_call_us) = paired(
            duration,
            |_| {
                let names = names.clone();
                async move {
                    let p = Proxy::new("name:bench.echo").map_err(err)?.naming(names);
                    p.resolve().await.map(drop).map_err(err)
                }
            },
            |n| {
                let p = direct.clone();
                async move { echo(&p, n).await.map(drop) }
            },
        )
        .await?;
        if progress {
            eprintln!("naming: first calls of new proxies, direct against by name...");
        }
        let (first_direct_us, first_named_us) = paired(
            duration,
            |n| {
                let address = address.clone();
                async move {
                    let p = Proxy::new(&address).map_err(err)?;
                    echo(&p, n).await.map(drop)
                }
            },
            |n| {
                let names = names.clone();
                async move {
                    let p = Proxy::new("name:bench.echo").map_err(err)?.naming(names);
                    echo(&p, n).await.map(drop)
                }
            },
        )
        .await?;

        if progress {
            eprintln!("naming: later calls, resolved proxy against direct proxy...");
        }
        let named = Proxy::new("name:bench.echo")
            .map_err(err)?
            .naming(names.clone());
        echo(&named, 0).await?;
        let (later_named_us, later_direct_us) = paired(
            duration,
            |n| {
                let p = named.clone();
                async move { echo(&p, n).await.map(drop) }
            },
            |n| {
                let p = direct.clone();
                async move { echo(&p, n).await.map(drop) }
            },
        )
        .await?;
        server.finalize().await;
        ns.finalize().await;
        Ok(NamingFigures {
            call_us,
            lookup_us,
            calls_per_s_inflight,
            lookups_per_s_inflight,
            store_lookup_us,
            resolve_us,
            resolve_call_us,
            first_direct_us,
            first_named_us,
            later_named_us,
            later_direct_us,
        })
    })
}

/// The figures as a table.
pub(crate) fn table(f: &NamingFigures, duration: Duration) -> String {
    let per_s = |us: f64| 1e6 / us;
    let mut s = format!(
        "naming over tcp loopback, {:.1} s per pair ({ROUNDS} alternating rounds, medians)\n",
        duration.as_secs_f64()
    );
    let mut row = |label: &str, figure: String, note: String| {
        s += &format!("  {label:<38} {figure:>22}  {note}\n");
    };
    row(
        "plain call (baseline)",
        format!("{:.1} us {:.0}/s", f.call_us, per_s(f.call_us)),
        String::new(),
    );
    row(
        "lookup through the name server",
        format!("{:.1} us {:.0}/s", f.lookup_us, per_s(f.lookup_us)),
        format!("{:.2}x a plain call", f.lookup_us / f.call_us),
    );
    row(
        &format!("plain calls, {INFLIGHT} in flight (baseline)"),
        format!("{:.0}/s", f.calls_per_s_inflight),
        String::new(),
    );
    row(
        &format!("lookups, {INFLIGHT} in flight"),
        format!("{:.0}/s", f.lookups_per_s_inflight),
        format!(
            "{:.2}x the plain calls/s",
            f.lookups_per_s_inflight / f.calls_per_s_inflight
        ),
    );
    row(
        "lookup in the embedded store",
        format!(
            "{:.2} us {:.0}/s",
            f.store_lookup_us,
            per_s(f.store_lookup_us)
        ),
        "in process, no network".to_string(),
    );
    row(
        "resolution of a fresh name: proxy",
        format!("{:.1} us", f.resolve_us),
        format!(
            "{:.2}x a plain call ({:.1} us, paired): what a first call adds",
            f.resolve_us / f.resolve_call_us,
            f.resolve_call_us
        ),
    );
    row(
        "first call, direct proxy",
        format!("{:.1} us", f.first_direct_us),
        "connect + handshake + call".to_string(),
    );
    row(
        "first call, name: proxy",
        format!("{:.1} us", f.first_named_us),
        format!(
            "{:.2}x direct: resolution adds {:.1} us ({:.2}x a plain call)",
            f.first_named_us / f.first_direct_us,
            f.first_named_us - f.first_direct_us,
            (f.first_named_us - f.first_direct_us) / f.call_us
        ),
    );
    row(
        "later calls, name: proxy",
        format!("{:.1} us", f.later_named_us),
        format!(
            "{:.3}x a direct proxy's ({:.1} us, paired)",
            f.later_named_us / f.later_direct_us,
            f.later_direct_us
        ),
    );
    s
}

/// The figures as JSON.
pub(crate) fn to_json(f: &NamingFigures) -> serde_json::Value {
    json!({
        "call_us": f.call_us,
        "lookup_us": f.lookup_us,
        "lookups_per_s": 1e6 / f.lookup_us,
        "lookup_over_call": f.lookup_us / f.call_us,
        "calls_per_s_inflight": f.calls_per_s_inflight,
        "lookups_per_s_inflight": f.lookups_per_s_inflight,
        "store_lookup_us": f.store_lookup_us,
        "resolve_us": f.resolve_us,
        "resolve_over_call": f.resolve_us / f.resolve_call_us,
        "first_call_direct_us": f.first_direct_us,
        "first_call_named_us": f.first_named_us,
        "resolution_added_us": f.first_named_us - f.first_direct_us,
        "later_named_us": f.later_named_us,
        "later_direct_us": f.later_direct_us,
        "later_named_over_direct": f.later_named_us / f.later_direct_us,
    })
}
