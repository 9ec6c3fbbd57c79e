//! Configuration from the environment: which codecs a server accepts, which a client prefers.

use crate::error::Error;
use crate::CodecId;

/// Environment variable with the codecs a server accepts, comma-separated
/// (`WIRECALL_CODECS_ACCEPTED=json,msgpack`), like Pyro4's `SERIALIZERS_ACCEPTED`.
pub const ENV_CODECS_ACCEPTED: &str = "WIRECALL_CODECS_ACCEPTED";

/// Environment variable with the codec a proxy uses by default (`WIRECALL_CODEC=cbor`), like
/// Pyro's `SERIALIZER`.
pub const ENV_CODEC: &str = "WIRECALL_CODEC";

/// The user annotation carrying the remote shutdown token.
pub(crate) const SHUTDOWN_TOKEN_KEY: &str = "shutdown-token";

/// First line of an error trace that lists exposed names, one per following line.
pub(crate) const EXPOSED_MARKER: &str = "wirecall-exposed:";

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
