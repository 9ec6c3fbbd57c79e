//! TLS beside plain tcp: the same echo call through the engine over `tcp://` and `tls://`
//! loopback servers, measured in interleaved rounds so that load elsewhere on the machine
//! hits both alike. The certificates (a throwaway CA and a server certificate for
//! 127.0.0.1) are made at start with rcgen.

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use wirecall::{CodecId, Engine, Proxy, TlsClientConfig, TlsServerConfig};

use crate::rpc::{
    self, BenchEcho, Count, Latency, Target, Throughput, BENCH_ECHO, BENCH_PROVIDER_ID,
};

/// One side of the comparison.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    /// Round trip with one call in flight.
    pub latency: Latency,
    /// Calls per second with the given calls in flight on one connection.
    pub throughput: Throughput,
}

/// Plain tcp and TLS over tcp, measured in the same run.
#[derive(Debug, Clone, Copy)]
pub struct TlsFigures {
    /// The codec of the echo calls.
    pub codec: CodecId,
    /// Over `tcp://`.
    pub tcp: Side,
    /// Over `tls://` (TLS 1.3, rustls with the ring provider).
    pub tls: Side,
}

impl TlsFigures {
    /// TLS p50 over tcp p50.
    pub fn p50_ratio(&self) -> f64 {
        self.tls.latency.p50.as_secs_f64() / self.tcp.latency.p50.as_secs_f64().max(1e-12)
    }

    /// TLS calls/s over tcp calls/s.
    pub fn calls_ratio(&self) -> f64 {
        self.tls.throughput.calls_per_sec / self.tcp.throughput.calls_per_sec.max(1e-12)
    }
}

fn configs() -> Result<(TlsServerConfig, TlsClientConfig), String> {
    let e = |e: rcgen::Error| format!("making test certificates: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(e)?).map_err(e)?;
    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    leaf.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let key = KeyPair::generate().map_err(e)?;
    let cert = leaf.signed_by(&key, &ca).map_err(e)?;
    let server = TlsServerConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .map_err(|e| e.to_string())?;
    let client = TlsClientConfig::with_ca_pem(ca.pem().as_bytes()).map_err(|e| e.to_string())?;
    Ok((server, client))
}

struct Subject {
    target: Target,
    one: Proxy,
    single: Vec<Proxy>,
    nanos: Vec<u64>,
    count: Count,
}

async fn subject(
    server: &Engine,
    codec: CodecId,
    tls: &TlsClientConfig,
    duration: Duration,
    inflight: usize,
) -> Result<Subject, String> {
    let target = Target {
        uri: server.address(),
        provider_id: BENCH_PROVIDER_ID,
        method: BENCH_ECHO.to_string(),
    };
    let connect = || async {
        let p = Proxy::new(&target.uri)
            .map_err(|e| e.to_string())?
            .codec(codec)
            .tls(tls.clone());
        p.connect().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(p)
    };
    let one = connect().await?;
    let single = vec![connect().await?];
    let err = |e: crate::rpc::BenchError| format!("echo over {}: {e}", target.uri);
    rpc::warm_up_calls(&one, &target, duration)
        .await
        .map_err(err)?;
    let warm = rpc::warm_up_time(duration);
    rpc::throughput_sample(&single, &target, inflight, Duration::ZERO, warm)
        .await
        .map_err(err)?;
    Ok(Subject {
        target,
        one,
        single,
        nanos: Vec::with_capacity(65536),
        count: Count::default(),
    })
}

/// Measures the echo call over `tcp://` and `tls://` for about `duration` each, in
/// interleaved rounds, on the current tokio runtime (run it inside a spawned task, as an
/// application's callers would run).
pub async fn tls_vs_tcp(
    codec: CodecId,
    duration: Duration,
    inflight: usize,
) -> Result<TlsFigures, String> {
    let (server_tls, client_tls) = configs()?;
    let start = |address: &'static str, tls: Option<TlsServerConfig>| async move {
        let mut b = Engine::server(address);
        if let Some(tls) = tls {
            b = b.tls(tls);
        }
        let server = b
            .start()
            .await
            .map_err(|e| format!("starting {address}: {e}"))?;
        server
            .register_provider(BenchEcho, BENCH_PROVIDER_ID)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(server)
    };
    let tcp_server = start("tcp://127.0.0.1:0", None).await?;
    let tls_server = start("tls://127.0.0.1:0", Some(server_tls)).await?;
    let result = async {
        let mut subjects = [
            subject(&tcp_server, codec, &client_tls, duration, inflight).await?,
            subject(&tls_server, codec, &client_tls, duration, inflight).await?,
        ];
        let rounds = rpc::rounds_for(duration);
        let slice = duration / rounds;
        for _ in 0..rounds {
            for s in &mut subjects {
                let err = |e: crate::rpc::BenchError| format!("echo over {}: {e}", s.target.uri);
                rpc::latency_sample(&s.one, &s.target, slice, &mut s.nanos)
                    .await
                    .map_err(err)?;
                let c =
                    rpc::throughput_sample(&s.single, &s.target, inflight, slice, Duration::ZERO)
                        .await
                        .map_err(err)?;
                s.count.add(c);
            }
        }
        let [mut tcp, mut tls] = subjects;
        Ok::<_, String>(TlsFigures {
            codec,
            tcp: Side {
                latency: Latency::from_nanos(&mut tcp.nanos),
                throughput: tcp.count.throughput(inflight, 1),
            },
            tls: Side {
                latency: Latency::from_nanos(&mut tls.nanos),
                throughput: tls.count.throughput(inflight, 1),
            },
        })
    }
    .await;
    tcp_server.finalize().await;
    tls_server.finalize().await;
    result
}
