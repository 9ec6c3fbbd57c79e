//! Configuration from the environment: which codecs a server accepts, which a client
//! prefers, and a server's limits and timeouts (every variable is listed in the README's
//! "Connections, limits and timeouts" table).

use crate::error::Error;
use crate::CodecId;

/// Environment variable with the codecs a server accepts, comma-separated
/// (`WIRECALL_CODECS_ACCEPTED=json,msgpack`), like Pyro4's `SERIALIZERS_ACCEPTED`.
pub const ENV_CODECS_ACCEPTED: &str = "WIRECALL_CODECS_ACCEPTED";

/// Environment variable with the codec a proxy uses by default (`WIRECALL_CODEC=cbor`), like
/// Pyro's `SERIALIZER`.
pub const ENV_CODEC: &str = "WIRECALL_CODEC";

/// Environment variable with a deployment's compression (SPEC §6.9), read by servers and
/// proxies alike: `zstd`, `zstd:LEVEL` (1-22, default 3), `zstd:LEVEL:THRESHOLD` (the
/// smallest payload compressed, a size such as `16KiB`; default 4KiB) or `none`. A server
/// accepts what it names (default when unset: zstd accepted); a proxy offers it (default
/// when unset: none). See [`parse_compression`].
pub const ENV_COMPRESSION: &str = "WIRECALL_COMPRESSION";

/// Parses a compression setting as [`ENV_COMPRESSION`] writes it: `zstd`, `zstd:LEVEL`,
/// `zstd:LEVEL:THRESHOLD` or `none` (also `off`), case-insensitive.
///
/// ```
/// let c = wirecall::config::parse_compression("zstd:6:16KiB")?;
/// assert_eq!((c.level, c.threshold), (6, 16 << 10));
/// assert!(wirecall::config::parse_compression("none")?.is_off());
/// assert!(wirecall::config::parse_compression("gzip").is_err());
/// # Ok::<(), wirecall::Error>(())
/// ```
pub fn parse_compression(text: &str) -> Result<crate::Compression, Error> {
    let t = text.trim().to_ascii_lowercase();
    let bad = |why: &str| {
        Error::config(format!(
            "bad compression `{text}`: {why}; write `zstd`, `zstd:LEVEL` (LEVEL 1-22, default {}), `zstd:LEVEL:THRESHOLD` (the smallest payload compressed, e.g. zstd:3:16KiB; default 4KiB) or `none`",
            crate::Compression::DEFAULT_LEVEL
        ))
    };
    if matches!(t.as_str(), "none" | "off") {
        return Ok(crate::Compression::off());
    }
    let mut parts = t.split(':');
    let mut c = match parts.next() {
        Some("zstd") => crate::Compression::zstd(),
        _ => return Err(bad("the algorithms are zstd (or none)")),
    };
    if let Some(level) = parts.next() {
        c.level = match level.trim().parse::<i32>() {
            Ok(l) if (1..=22).contains(&l) => l,
            _ => return Err(bad("the level is a whole number from 1 to 22")),
        };
    }
    if let Some(threshold) = parts.next() {
        let n = parse_size(threshold).map_err(|_| bad("the threshold is a size"))?;
        c.threshold = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if parts.next().is_some() {
        return Err(bad("too many `:` parts"));
    }
    Ok(c)
}

/// `WIRECALL_COMPRESSION`, if set.
pub(crate) fn compression_from_env() -> Result<Option<crate::Compression>, Error> {
    match env(ENV_COMPRESSION) {
        Some(v) => parse_compression(&v)
            .map(Some)
            .map_err(|e| Error::config(format!("{ENV_COMPRESSION}: {e}"))),
        None => Ok(None),
    }
}

/// The user annotation carrying the remote shutdown token.
pub(crate) const SHUTDOWN_TOKEN_KEY: &str = "shutdown-token";

/// Parses a comma-separated list of codec names (`"json, msgpack"`).
///
/// Fails on an unknown name, naming the known ones.
pub fn parse_codec_list(list: &str) -> Result<Vec<CodecId>, Error> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let id = parse_codec(name)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Parses one codec name (`"json"`, case-insensitive).
pub fn parse_codec(name: &str) -> Result<CodecId, Error> {
    CodecId::from_builtin_name(name.trim()).ok_or_else(|| {
        Error::config(format!(
            "unknown codec `{name}`; the built-in codecs are {}",
            names(&CodecId::BUILTIN)
        ))
    })
}

/// The names of codecs, comma-separated.
pub(crate) fn names(ids: &[CodecId]) -> String {
    ids.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The accepted set from `WIRECALL_CODECS_ACCEPTED`, or every built-in codec.
pub(crate) fn accepted_from_env() -> Result<Vec<CodecId>, Error> {
    match std::env::var(ENV_CODECS_ACCEPTED) {
        Ok(v) if !v.trim().is_empty() => {
            parse_codec_list(&v).map_err(|e| Error::config(format!("{ENV_CODECS_ACCEPTED}: {e}")))
        }
        _ => Ok(CodecId::BUILTIN.to_vec()),
    }
}

/// The default proxy codec from `WIRECALL_CODEC`, if set.
pub(crate) fn codec_from_env() -> Result<Option<CodecId>, Error> {
    match std::env::var(ENV_CODEC) {
        Ok(v) if !v.trim().is_empty() => parse_codec(&v)
            .map(Some)
            .map_err(|e| Error::config(format!("{ENV_CODEC}: {e}"))),
        _ => Ok(None),
    }
}

/// Environment variable with a server's idle timeout (`WIRECALL_IDLE_TIMEOUT=30s`; `off`
/// keeps idle connections open).
pub const ENV_IDLE_TIMEOUT: &str = "WIRECALL_IDLE_TIMEOUT";
/// Environment variable with a server's handshake timeout (`WIRECALL_HANDSHAKE_TIMEOUT=5s`).
pub const ENV_HANDSHAKE_TIMEOUT: &str = "WIRECALL_HANDSHAKE_TIMEOUT";
/// Environment variable with a server's frame-completion timeout
/// (`WIRECALL_FRAME_TIMEOUT=10s`).
pub const ENV_FRAME_TIMEOUT: &str = "WIRECALL_FRAME_TIMEOUT";
/// Environment variable with a server's keep-alive interval (`WIRECALL_KEEPALIVE=30s`).
pub const ENV_KEEPALIVE: &str = "WIRECALL_KEEPALIVE";
/// Environment variable with how long a server keeps a streamed result its caller stopped
/// reading (`WIRECALL_STREAM_LIFETIME=30s`; default off).
pub const ENV_STREAM_LIFETIME: &str = "WIRECALL_STREAM_LIFETIME";
/// Environment variable with how long a server keeps a streamed result whose connection
/// was lost, for its caller to resume (`WIRECALL_STREAM_LINGER=30s`, the default; `off`).
pub const ENV_STREAM_LINGER: &str = "WIRECALL_STREAM_LINGER";
/// Environment variable with the receive-buffer bytes a server's connections may hold
/// together (`WIRECALL_MAX_BUFFERED=256MiB`).
pub const ENV_MAX_BUFFERED: &str = "WIRECALL_MAX_BUFFERED";
/// Environment variable with the most connections a server serves at once
/// (`WIRECALL_MAX_CONNECTIONS=1000`; `off` for no limit).
pub const ENV_MAX_CONNECTIONS: &str = "WIRECALL_MAX_CONNECTIONS";
/// Environment variable with the most calls in flight on one server connection
/// (`WIRECALL_MAX_IN_FLIGHT=64`).
pub const ENV_MAX_IN_FLIGHT: &str = "WIRECALL_MAX_IN_FLIGHT";
/// Environment variable with the largest frame a server accepts (`WIRECALL_MAX_FRAME=1MiB`).
pub const ENV_MAX_FRAME: &str = "WIRECALL_MAX_FRAME";
/// Environment variable with a server's blocking budget (`WIRECALL_BLOCKING_BUDGET=10ms`;
/// `off` turns the detection off): a method whose calls run longer than this on a
/// connection's reader is moved off it (see
/// [`ServerBuilder::blocking_budget`](crate::ServerBuilder::blocking_budget)).
pub const ENV_BLOCKING_BUDGET: &str = "WIRECALL_BLOCKING_BUDGET";

/// The default blocking budget.
pub(crate) const DEFAULT_BLOCKING_BUDGET: std::time::Duration =
    std::time::Duration::from_millis(10);

/// The server's blocking budget: the one set on the builder (`Some(None)`: off), else
/// `WIRECALL_BLOCKING_BUDGET`, else 10 ms.
pub(crate) fn blocking_budget_from_env(
    set: Option<Option<std::time::Duration>>,
) -> Result<Option<std::time::Duration>, Error> {
    if let Some(b) = set {
        return Ok(b);
    }
    match env(ENV_BLOCKING_BUDGET) {
        Some(v) => parse_duration(&v).map_err(|e| {
            Error::config(format!(
                "{ENV_BLOCKING_BUDGET}: {e}; it is how long a handler may hold a connection's reader before its method is moved off it"
            ))
        }),
        None => Ok(Some(DEFAULT_BLOCKING_BUDGET)),
    }
}

/// Parses a size in bytes: a whole number, optionally followed by `KiB`, `MiB` or `GiB`
/// (also written `K`, `M`, `G`; powers of 1024) or `B`.
pub fn parse_size(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::config(format!(
            "bad size `{text}`: write a whole number of bytes, optionally with a unit, e.g. 65536, 64KiB, 16MiB, 1GiB"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// The value of an environment variable, when set and not blank.
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// A whole number in `var`, at least `min`, with what it is for in the error.
fn env_count(var: &str, min: u64, max: u64) -> Result<Option<u64>, Error> {
    let Some(v) = env(var) else { return Ok(None) };
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(Error::config(format!(
            "{var}: `{v}` is not a whole number between {min} and {max}"
        ))),
    }
}

/// `WIRECALL_MAX_CONNECTIONS`, if set: `Some(None)` for `off`.
pub(crate) fn max_connections_from_env() -> Result<Option<Option<usize>>, Error> {
    if let Some(v) = env(ENV_MAX_CONNECTIONS) {
        if matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "none") {
            return Ok(Some(None));
        }
    }
    Ok(env_count(ENV_MAX_CONNECTIONS, 1, usize::MAX as u64)?.map(|n| Some(n as usize)))
}

/// Environment variable with how many times a proxy retries an idempotent call after the
/// connection was lost, and reconnects before any call is sent (Pyro's `MAX_RETRIES`):
/// `WIRECALL_MAX_RETRIES=5`; `0` turns retries off. Default [`DEFAULT_MAX_RETRIES`].
pub const ENV_MAX_RETRIES: &str = "WIRECALL_MAX_RETRIES";

/// How many times a proxy retries by default (see [`ENV_MAX_RETRIES`]).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// `WIRECALL_MAX_RETRIES`, if set.
pub(crate) fn max_retries_from_env() -> Result<Option<u32>, Error> {
    Ok(env_count(ENV_MAX_RETRIES, 0, 1000)?.map(|n| n as u32))
}

/// `WIRECALL_MAX_IN_FLIGHT`, if set.
pub(crate) fn max_in_flight_from_env() -> Result<Option<u32>, Error> {
    Ok(env_count(ENV_MAX_IN_FLIGHT, 1, u32::MAX.into())?.map(|n| n as u32))
}

/// `WIRECALL_MAX_FRAME`, if set.
pub(crate) fn max_frame_from_env() -> Result<Option<u32>, Error> {
    let Some(v) = env(ENV_MAX_FRAME) else {
        return Ok(None);
    };
    let n = parse_size(&v).map_err(|e| Error::config(format!("{ENV_MAX_FRAME}: {e}")))?;
    let min = u64::from(wirecall_protocol::Limits::MIN_FRAME_LEN);
    if n < min || n > u64::from(u32::MAX) {
        return Err(Error::config(format!(
            "{ENV_MAX_FRAME}: `{v}` is outside {min} bytes to 4GiB-1 (a frame must hold at least the handshake)"
        )));
    }
    Ok(Some(n as u32))
}

/// Parses a duration written as a number and a unit: `500ms`, `30s`, `2m`, `1h` (a bare
/// number is seconds). `off`, `none` and `0` mean no timeout (`None`).
pub fn parse_duration(text: &str) -> Result<Option<std::time::Duration>, Error> {
    let t = text.trim();
    if matches!(t.to_ascii_lowercase().as_str(), "off" | "none" | "0") {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::config(format!(
            "bad duration `{text}`: write a whole number and a unit, e.g. 500ms, 30s, 2m, 1h (or `off`)"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(bad()),
    }
    .ok_or_else(bad)?;
    Ok(Some(std::time::Duration::from_millis(ms)))
}

/// A server's timeouts: those set on the builder (`[idle, handshake, frame, keepalive, stream lifetime]`,
/// `Some(None)` for explicitly off), else those in the environment, else the defaults (60 s,
/// 10 s, 30 s, 30 s, off).
pub(crate) fn timeouts_from_env(
    set: [Option<Option<std::time::Duration>>; 6],
) -> Result<crate::server::Timeouts, Error> {
    let s = |s| Some(std::time::Duration::from_secs(s));
    let defaults = [s(60), s(10), s(30), s(30), None, s(30)];
    let vars = [
        ENV_IDLE_TIMEOUT,
        ENV_HANDSHAKE_TIMEOUT,
        ENV_FRAME_TIMEOUT,
        ENV_KEEPALIVE,
        ENV_STREAM_LIFETIME,
        ENV_STREAM_LINGER,
    ];
    let mut out = [None; 6];
    for i in 0..6 {
        out[i] = match set[i] {
            Some(t) => t,
            None => match std::env::var(vars[i]) {
                Ok(v) if !v.trim().is_empty() => {
                    parse_duration(&v).map_err(|e| Error::config(format!("{}: {e}", vars[i])))?
                }
                _ => defaults[i],
            },
        };
    }
    Ok(crate::server::Timeouts {
        idle: out[0],
        handshake: out[1],
        frame: out[2],
        keepalive: out[3],
        stream_lifetime: out[4],
        stream_linger: out[5],
    })
}

/// `WIRECALL_MAX_BUFFERED`, if set.
pub(crate) fn max_buffered_from_env() -> Result<Option<usize>, Error> {
    match env(ENV_MAX_BUFFERED) {
        Some(v) => parse_size(&v)
            .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
            .map_err(|e| Error::config(format!("{ENV_MAX_BUFFERED}: {e}"))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};
    use std::time::Duration;

    #[test]
    fn sizes_are_bytes_with_an_optional_binary_unit() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size(" 16MiB ").unwrap(), 16 << 20);
        assert_eq!(parse_size("16m").unwrap(), 16 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "12 parsecs",
            "99999999999999999999GiB",
        ] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("16MiB"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(
            parse_duration("500ms").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("30s").unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration(" 2m ").unwrap(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("1h").unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_duration("45").unwrap(), Some(Duration::from_secs(45)));
        for off in ["off", "none", "0", "OFF"] {
            assert_eq!(parse_duration(off).unwrap(), None, "{off}");
        }
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10 parsecs",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
