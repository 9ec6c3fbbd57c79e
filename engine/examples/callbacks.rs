//! The callback seed (Pyro's `callback` example, RPyC's symmetric connections): the client
//! exposes a listener on its own connection and the server's worker calls it back with
//! progress reports during a long call, then tells it the result with a oneway call. The
//! client listens on no socket: the callbacks travel over the connection it opened.
//!
//! Run with `cargo run -p wirecall --example callbacks [address]`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wirecall::{CallContext, Engine, Error, Proxy};

/// The client's listener: what the server calls back.
#[derive(Default)]
pub(crate) struct Listener {
    /// `(step, total)` progress reports, in order.
    pub progress: Mutex<Vec<(u32, u32)>>,
    /// The result the worker announced.
    pub done: Mutex<Option<u64>>,
    done_told: tokio::sync::Notify,
}

#[wirecall::provider(service = "listener")]
impl Listener {
    /// A progress report; answers whether the worker should go on (a callback's answer
    /// goes back to the server's handler).
    #[remote]
    fn progress(&self, step: u32, total: u32) -> bool {
        println!("progress: {step}/{total}");
        self.progress.lock().unwrap().push((step, total));
        true
    }

    /// The work is done (a oneway callback: the worker does not wait for it).
    #[remote(oneway)]
    fn done(&self, result: u64) {
        println!("done: {result}");
        *self.done.lock().unwrap() = Some(result);
        self.done_told.notify_one();
    }
}

/// The server's worker.
pub(crate) struct Worker;

#[wirecall::provider(service = "worker")]
impl Worker {
    /// Sums `1..=n` in `n` steps, reporting each step to the caller's listener (exposed as
    /// provider `listener_id` on the caller's connection) and the result at the end.
    #[remote]
    async fn work(&self, ctx: CallContext, n: u32, listener_id: u16) -> Result<u64, Error> {
        // A typed client of the caller's listener; its calls inherit this call's deadline.
        let listener = ListenerClient::new(ctx.callback()?, listener_id);
        let mut sum = 0u64;
        for step in 1..=n {
            tokio::time::sleep(Duration::from_millis(5)).await;
            sum += u64::from(step);
            if !listener.progress(step, n).await? {
                break;
            }
        }
        listener.done(sum).await?;
        Ok(sum)
    }
}

/// What the seed observed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The progress reports the client received.
    pub progress: Vec<(u32, u32)>,
    /// The worker's answer to the call.
    pub result: u64,
    /// What the oneway `done` callback told the client.
    pub done: Option<u64>,
}

/// Runs the seed against a server listening on `address`.
pub(crate) async fn run(address: &str) -> Result<Observed, Error> {
    let engine = Engine::server(address).start().await?;
    engine.register_provider(Worker, 1)?;

    // The client exposes its listener as provider 9 of its own connection.
    let listener = Arc::new(Listener::default());
    let proxy = Proxy::new(&engine.address())?
        .timeout(Duration::from_secs(10))
        .expose_arc(listener.clone(), 9)?;
    let worker = WorkerClient::new(&proxy, 1);
    let result = worker.work(4, 9).await?;
    println!("the worker answered {result}");
    // The oneway `done` may arrive just after the answer.
    tokio::time::timeout(Duration::from_secs(10), async {
        while listener.done.lock().unwrap().is_none() {
            listener.done_told.notified().await;
        }
    })
    .await
    .map_err(|_| Error::Timeout {
        after: Duration::from_secs(10),
    })?;
    drop((worker, proxy));
    engine.finalize().await;
    let progress = listener.progress.lock().unwrap().clone();
    let done = *listener.done.lock().unwrap();
    Ok(Observed {
        progress,
        result,
        done,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:0".to_string());
    let seen = run(&address).await?;
    assert_eq!(seen.result, 10);
    assert_eq!(seen.done, Some(10));
    Ok(())
}
