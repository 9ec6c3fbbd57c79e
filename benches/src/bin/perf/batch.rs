//! `perf --profile batch`: 1,000 small calls as one batch (`Proxy::batch`) against the same
//! 1,000 calls made one after another, on the same loopback server and connection, in
//! alternating rounds (A, B, A, B, ...) reported as medians, so drift on a shared machine
//! hits both sides alike. Batches are measured both ways: stopping at the first error (an
//! ordered batch: the server runs the calls one at a time, in order) and running all (the
//! calls travel as independent calls in windows of the server's in-flight limit).

use std::time::{Duration, Instant};

use serde_json::json;
use wirecall::{Engine, Functions, Proxy};

/// Calls per batch (and per sequential run).
pub(crate) const CALLS: usize = 1000;

/// How many alternating rounds each side gets.
const ROUNDS: usize = 5;

/// The figures of one run, in µs per 1,000 calls (medians of the rounds).
pub(crate) struct BatchFigures {
    transport: &'static str,
    sequential_us: f64,
    ordered_us: f64,
    run_all_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn sequential(p: &Proxy) -> Result<(), String> {
    for n in 0..CALLS as u64 {
        let r: u64 = p
            .call_on(1, "bench_echo")
            .map_err(|e| e.to_string())?
            .arg(n)
            .call()
            .await
            .map_err(|e| e.to_string())?;
        if r != n {
            return Err(format!("echo {n} came back as {r}"));
        }
    }
    Ok(())
}

async fn batched(p: &Proxy, run_all: bool) -> Result<(), String> {
    let mut b = p.batch();
    if run_all {
        b = b.run_all();
    }
    let calls: Vec<_> = (0..CALLS as u64)
        .map(|n| b.call::<_, u64>(1, "bench_echo", ((), n)))
        .collect();
    let r = b.send().await.map_err(|e| e.to_string())?;
    for (n, c) in calls.into_iter().enumerate() {
        let v = r.get(c).map_err(|e| e.to_string())?;
        if v != n as u64 {
            return Err(format!("batched echo {n} came back as {v}"));
        }
    }
    Ok(())
}

/// Runs `f` repeatedly for `budget` (at least once); returns the mean µs per run.
async fn mean_us<F, Fut>(budget: Duration, mut f: F) -> Result<f64, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget || n == 0 {
        f().await?;
        n += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// Runs the batch figures over `transport` ("tcp" or "unix") on `rt`.
pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    transport: &'static str,
    duration: Duration,
    progress: bool,
) -> Result<BatchFigures, String> {
    rt.block_on(async {
        let err = |e: wirecall::Error| e.to_string();
        let sock = std::env::temp_dir().join(format!("wirecall-batch-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let listen = match transport {
            "unix" => format!("unix://{}", sock.display()),
            _ => "tcp://127.0.0.1:0".to_string(),
        };
        // The ordered batch holds all its calls in flight: the server allows 1,000.
        let server = Engine::server(listen)
            .max_in_flight(CALLS as u32)
            .start()
            .await
            .map_err(err)?;
        server
            .register_functions(
                Functions::new("bench").sync_fn("echo", &["n"], |(n,): (u64,)| n),
                1,
            )
            .map_err(err)?;
        let proxy = Proxy::new(&server.address()).map_err(err)?;
        proxy.connect().await.map_err(err)?;
        // Warm up both paths.
        sequential(&proxy).await?;
        batched(&proxy, false).await?;
        batched(&proxy, true).await?;
        if progress {
            eprintln!("batch over {transport}: {CALLS} sequential calls against one batch...");
        }
        let round = duration / ROUNDS as u32;
        let (mut s, mut o, mut a) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            s.push(mean_us(round, || sequential(&proxy)).await?);
            o.push(mean_us(round, || batched(&proxy, false)).await?);
            a.push(mean_us(round, || batched(&proxy, true)).await?);
        }
        server.finalize().await;
        let _ = std::fs::remove_file(&sock);
        Ok(BatchFigures {
            transport,
            sequential_us: median(s),
            ordered_us: median(o),
            run_all_us: median(a),
        })
    })
}

/// A table of the figures.
pub(crate) fn table(figs: &[BatchFigures], duration: Duration) -> String {
    let mut s = format!(
        "{CALLS} small calls (u64 echo, the proxy's default codec) as one batch vs one after another, same server and connection; {:.1} s per side ({ROUNDS} alternating rounds, medians)\n",
        duration.as_secs_f64()
    );
    s += "transport  sequential ms  ordered batch ms  (speed-up)  run_all batch ms  (speed-up)\n";
    for f in figs {
        s += &format!(
            "{:<9}  {:>13.2}  {:>16.2}  {:>10.1}x  {:>16.2}  {:>10.1}x\n",
            f.transport,
            f.sequential_us / 1e3,
            f.ordered_us / 1e3,
            f.sequential_us / f.ordered_us,
            f.run_all_us / 1e3,
            f.sequential_us / f.run_all_us,
        );
    }
    s
}

/// The figures as JSON.
pub(crate) fn to_json(figs: &[BatchFigures]) -> serde_json::Value {
    json!(figs
        .iter()
        .map(|f| json!({
            "transport": f.transport,
            "calls": CALLS,
            "sequential_us": f.sequential_us,
            "ordered_batch_us": f.ordered_us,
            "run_all_batch_us": f.run_all_us,
            "ordered_speedup": f.sequential_us / f.ordered_us,
            "run_all_speedup": f.sequential_us / f.run_all_us,
        }))
        .collect::<Vec<_>>())
}
