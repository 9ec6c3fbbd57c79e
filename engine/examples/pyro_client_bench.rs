//! Sequential calls/s of a wirecall `PyroProxy`, or of a `Proxy` in Pyro mode, against a
//! Python Pyro5 daemon's `echo` method (`scripts/pyro-bench.py` runs it beside a Python
//! Pyro5 proxy against the same daemon).
//!
//! Run with `cargo run --release -p wirecall --example pyro_client_bench URI SERIALIZER
//! SECONDS [pyro|proxy]`; prints the calls per second. `pyro` (the default) calls
//! `PyroProxy::call` with dynamic values; `proxy` calls `Proxy::new(URI)` (Pyro mode) with
//! the call builder and a typed `String` result.

use std::time::{Duration, Instant};

use wirecall::{CodecId, Proxy, PyroProxy, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (uri, serializer, seconds, mode) = match &args[..] {
        [_, uri, ser, secs] => (uri, ser, secs, "pyro"),
        [_, uri, ser, secs, mode] => (uri, ser, secs, mode.as_str()),
        _ => return Err("usage: pyro_client_bench URI SERIALIZER SECONDS [pyro|proxy]".into()),
    };
    let codec = match serializer.as_str() {
        "serpent" => CodecId::SERPENT,
        "json" => CodecId::JSON,
        "msgpack" => CodecId::MSGPACK,
        "marshal" => CodecId::MARSHAL,
        other => return Err(format!("unknown serializer {other}").into()),
    };
    let seconds: f64 = seconds
        .parse()
        .map_err(|_| format!("bad SECONDS {seconds}"))?;
    if mode == "proxy" {
        return proxy_mode(uri, codec, seconds).await;
    }
    if mode != "pyro" {
        return Err(format!("unknown mode {mode}: pyro or proxy").into());
    }
    let proxy = PyroProxy::new(uri)?.serializer(codec)?;
    proxy
        .call("echo", vec![Value::Str("warm up".into())], vec![])
        .await?;
    // The same payload as the Python proxy's loop.
    let payload = Value::Str("wirecall echo payload, 32 bytes!".into());
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let t0 = Instant::now();
    let mut n = 0u64;
    loop {
        let back = proxy.call("echo", vec![payload.clone()], vec![]).await?;
        debug_assert_eq!(back, payload);
        n += 1;
        if n % 64 == 0 && Instant::now() >= end {
            break;
        }
    }
    println!("{:.0}", n as f64 / t0.elapsed().as_secs_f64());
    Ok(())
}

/// The same loop through `Proxy::new(URI)` in Pyro mode.
async fn proxy_mode(
    uri: &str,
    codec: CodecId,
    seconds: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let proxy = Proxy::new(uri)?.codec(codec);
    let _: String = proxy.call("echo")?.arg("warm up").call().await?;
    let payload = "wirecall echo payload, 32 bytes!";
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let t0 = Instant::now();
    let mut n = 0u64;
    loop {
        let back: String = proxy.call("echo")?.arg(payload).call().await?;
        debug_assert_eq!(back, payload);
        n += 1;
        if n % 64 == 0 && Instant::now() >= end {
            break;
        }
    }
    println!("{:.0}", n as f64 / t0.elapsed().as_secs_f64());
    Ok(())
}
