//! The Pyro-style seed: a server that accepts only json and msgpack, a proxy with a codec
//! override that the server refuses (the error lists the accepted codecs), the same proxy
//! switched to an accepted codec, per-proxy timeouts, and metadata from the daemon object.
//!
//! Run with `cargo run -p wirecall --example pyro_proxy [address]`.

use std::time::Duration;

use wirecall::{CodecId, Engine, Error, Proxy};

/// A Pyro-style exposed object.
#[derive(Default)]
pub(crate) struct Thermostat;

#[wirecall::provider(service = "thermostat")]
impl Thermostat {
    /// Exposed method.
    #[remote]
    fn convert(&self, celsius: f64) -> f64 {
        celsius * 9.0 / 5.0 + 32.0
    }

    /// A slow method, to show per-proxy timeouts.
    #[remote]
    async fn slow(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

/// What the seed observed.
#[derive(Debug)]
pub(crate) struct Observed {
    /// The refusal message for the cbor proxy.
    pub refusal: String,
    /// The result through the json proxy.
    pub converted: f64,
    /// Whether the slow call timed out.
    pub timed_out: bool,
}

/// Runs the seed against a server listening on `address`.
pub(crate) async fn run(address: &str) -> Result<Observed, Error> {
    let engine = Engine::server(address)
        .accept([CodecId::JSON, CodecId::MSGPACK])
        .start()
        .await?;
    engine.register_provider(Thermostat, 7)?;
    // A Pyro-like URI: service name, provider id and address.
    let uri = format!("thermostat:7@{}", engine.address());

    let cbor = Proxy::new(&uri)?.codec(CodecId::CBOR);
    let refusal = match cbor.call("convert")?.arg(100.0).call::<f64>().await {
        Err(e @ Error::CodecRefused { .. }) => e.to_string(),
        other => panic!("expected a codec refusal, got {other:?}"),
    };
    println!("{refusal}");

    // Same connection, another codec: works.
    let json = cbor.clone().codec(CodecId::JSON);
    let converted: f64 = json.call("convert")?.arg(100.0).call().await?;
    println!("100 C = {converted} F");

    // Per-proxy timeout: the deadline travels with the call.
    let impatient = json.clone().timeout(Duration::from_millis(50));
    let timed_out = match impatient.call("slow")?.arg(2_000u64).call::<u64>().await {
        Err(e) if e.is_timeout() => true,
        Ok(_) => false,
        Err(e) => return Err(e),
    };
    // The proxy still works afterwards.
    let quick: u64 = impatient.call("slow")?.arg(1u64).call().await?;
    assert_eq!(quick, 1);

    // Metadata from the daemon object, and a locally validated proxy.
    let meta = json.metadata().await?;
    println!("exposed: {:?}", meta.providers);
    assert!(json.has_method(7, "thermostat_convert").await?);
    let checked = json.clone().validated();
    match checked.call("missing")?.call::<()>().await {
        Err(Error::NoSuchMethod { exposed, .. }) => {
            println!("checked locally; exposed: {exposed:?}")
        }
        other => panic!("expected NoSuchMethod, got {other:?}"),
    }
    engine.finalize().await;
    Ok(Observed {
        refusal,
        converted,
        timed_out,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:0".to_string());
    let seen = run(&address).await?;
    assert!(seen.timed_out);
    println!("cbor proxy refused: {}", seen.refusal);
    println!("json proxy converted: {}", seen.converted);
    Ok(())
}
