//! tarpc, the peer baseline: the same echo call as [`wirecall_bench_harness::rpc`] makes,
//! through tarpc 0.38 with its bincode serde transport over loopback TCP, `TCP_NODELAY` on
//! both ends. Kept out of the harness so that the `wirecall` command line does not build
//! tarpc.

use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tarpc::serde_transport;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use wirecall_bench_harness::rpc::{
    run_workers, warm_up_time, BenchError, Count, Latency, Throughput, ECHO_PAYLOAD,
};

mod service {
    #![allow(missing_docs)]
    /// The tarpc echo service.
    #[tarpc::service]
    pub trait Echo {
        /// Returns its argument.
        async fn echo(payload: String) -> String;
    }
}
use service::{Echo, EchoClient};

#[derive(Clone)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: tarpc::context::Context, payload: String) -> String {
        payload
    }
}

/// A tarpc echo server on 127.0.0.1 port 0 and a connected client.
pub struct TarpcPair {
    addr: std::net::SocketAddr,
    client: EchoClient,
    server: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for TarpcPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TarpcPair")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TarpcPair {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A client on a connection of its own to `addr`.
async fn connect(addr: std::net::SocketAddr) -> std::io::Result<EchoClient> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let transport = serde_transport::new(
        Framed::new(stream, LengthDelimitedCodec::new()),
        Bincode::default(),
    );
    Ok(EchoClient::new(tarpc::client::Config::default(), transport).spawn())
}

async fn echo(client: &EchoClient) -> Result<(), BenchError> {
    let reply = client
        .echo(tarpc::context::current(), ECHO_PAYLOAD.to_string())
        .await
        .map_err(|e| BenchError::Other(format!("tarpc echo failed: {e}")))?;
    if reply.len() != ECHO_PAYLOAD.len() {
        return Err(BenchError::Other(
            "tarpc echo answered a different payload".into(),
        ));
    }
    Ok(())
}

/// Echo calls with `inflight` in flight spread over `clients` (round robin).
async fn throughput_over(
    clients: &[EchoClient],
    inflight: usize,
    duration: Duration,
    warm: Duration,
) -> Result<Count, BenchError> {
    if clients.is_empty() {
        return Err(BenchError::Other(
            "no tarpc connection to call through".into(),
        ));
    }
    run_workers(inflight.max(1), duration, warm, |w, gate| {
        let client = clients[w % clients.len()].clone();
        gate.repeat(async move || echo(&client).await)
    })
    .await
}

impl TarpcPair {
    /// Starts the server and connects one client. Must run inside a tokio runtime.
    ///
    /// The server answers each request inline on its connection's task, as wirecall
    /// answers a sync handler, rather than on a task of its own as tarpc's examples do:
    /// measured on 2 workers, spawning made tarpc ~3.5x slower at 64 in flight (83k
    /// against 296k calls/s), which flattered wirecall.
    pub async fn start() -> std::io::Result<TarpcPair> {
        use tarpc::server::{BaseChannel, Channel};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if stream.set_nodelay(true).is_err() {
                    continue;
                }
                let transport = serde_transport::new(
                    Framed::new(stream, LengthDelimitedCodec::new()),
                    Bincode::default(),
                );
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(EchoServer.serve())
                        .for_each(|response| response),
                );
            }
        });
        let client = connect(addr).await?;
        Ok(TarpcPair {
            addr,
            client,
            server,
        })
    }

    /// Times echo calls, one in flight, for about `duration`, appending nanoseconds
    /// to `out`.
    pub async fn latency_sample(
        &self,
        duration: Duration,
        out: &mut Vec<u64>,
    ) -> Result<(), BenchError> {
        let end = Instant::now() + duration;
        loop {
            let t = Instant::now();
            echo(&self.client).await?;
            out.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if t >= end {
                return Ok(());
            }
        }
    }

    /// Round-trip latency, one call in flight, after a warm-up.
    pub async fn latency(&self, duration: Duration) -> Result<Latency, BenchError> {
        let mut nanos = Vec::with_capacity(4096);
        self.latency_sample(warm_up_time(duration), &mut nanos)
            .await?;
        nanos.clear();
        self.latency_sample(duration, &mut nanos).await?;
        Ok(Latency::from_nanos(&mut nanos))
    }

    /// Calls with `inflight` in flight on the one connection, counted for `duration`
    /// after `warm` uncounted.
    pub async fn throughput_sample(
        &self,
        inflight: usize,
        duration: Duration,
        warm: Duration,
    ) -> Result<Count, BenchError> {
        throughput_over(std::slice::from_ref(&self.client), inflight, duration, warm).await
    }

    /// Calls per second with `inflight` calls in flight on the one connection.
    pub async fn throughput(
        &self,
        inflight: usize,
        duration: Duration,
    ) -> Result<Throughput, BenchError> {
        let c = self
            .throughput_sample(inflight, duration, warm_up_time(duration))
            .await?;
        Ok(c.throughput(inflight.max(1), 1))
    }

    /// `connections` more clients to the same server, each on a connection of its own.
    pub async fn connect_many(&self, connections: usize) -> std::io::Result<TarpcClients> {
        let mut clients = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            clients.push(connect(self.addr).await?);
        }
        Ok(TarpcClients(clients))
    }
}

/// tarpc clients on connections of their own (see [`TarpcPair::connect_many`]).
pub struct TarpcClients(Vec<EchoClient>);

impl fmt::Debug for TarpcClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TarpcClients")
            .field("connections", &self.0.len())
            .finish()
    }
}

impl TarpcClients {
    /// Calls with `inflight` in flight spread over the connections (round robin), counted
    /// for `duration` after `warm` uncounted.
    pub async fn throughput_sample(
        &self,
        inflight: usize,
        duration: Duration,
        warm: Duration,
    ) -> Result<Count, BenchError> {
        throughput_over(&self.0, inflight, duration, warm).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarpc_peer_answers() {
        let rt = wirecall_bench_harness::rpc::runtime().unwrap();
        rt.block_on(async {
            let pair = TarpcPair::start().await.unwrap();
            let l = pair.latency(Duration::from_millis(30)).await.unwrap();
            assert!(l.samples > 5, "{l:?}");
            let t = pair.throughput(8, Duration::from_millis(30)).await.unwrap();
            assert!(t.calls > 0 && t.inflight == 8, "{t:?}");
            let many = pair.connect_many(4).await.unwrap();
            let c = many
                .throughput_sample(8, Duration::from_millis(30), Duration::ZERO)
                .await
                .unwrap();
            assert!(c.calls > 0, "{c:?}");
        });
    }
}
