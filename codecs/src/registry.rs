//! Runtime selection: free functions for the built-ins and a `Registry` adding user codecs.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::set::{is_compiled_in, known_builtin_names, parse_builtin_name, parse_list};
use crate::{
    from_value, to_value, Codec, CodecError, CodecId, CodecInfo, CodecSet, DynCodec, ErrorKind,
    Limits, Origin, Value,
};

#[cold]
fn unknown(id: CodecId, origin: Origin) -> CodecError {
    let msg = if let Some(name) = id.builtin_name() {
        format!(
            "codec `{name}` (id {}) is not compiled in; enable the `{name}` feature of \
             wirecall-codecs (available: {})",
            id.get(),
            known_builtin_names()
        )
    } else if id.is_user() {
        format!(
            "no user codec is registered with id {}; register it with Registry::register \
             (built-in codecs: {})",
            id.get(),
            known_builtin_names()
        )
    } else {
        format!(
            "unknown codec id {}; known codecs: {}",
            id.get(),
            known_builtin_names()
        )
    };
    CodecError::new(id, ErrorKind::UnknownCodec, origin, msg)
}

/// Encodes `value` with the built-in codec `id`, appending to `out`.
#[inline]
pub fn encode_into<T: Serialize + ?Sized>(
    id: CodecId,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    dispatch!(id, C => C::encode_into(value, out), Err(unknown(id, Origin::Config)))
}

/// Decodes a `T` from `bytes` with the built-in codec `id`.
#[inline]
pub fn decode<T: DeserializeOwned>(
    id: CodecId,
    bytes: &[u8],
    limits: &Limits,
) -> Result<T, CodecError> {
    dispatch!(id, C => C::decode(bytes, limits), Err(unknown(id, Origin::Peer)))
}

/// Encodes a dynamic value with the built-in codec `id`, appending to `out`.
pub fn encode_value(id: CodecId, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    dispatch!(id, C => C::encode_value(value, out), Err(unknown(id, Origin::Config)))
}

/// Decodes `bytes` into a dynamic value with the built-in codec `id`.
pub fn decode_value(id: CodecId, bytes: &[u8], limits: &Limits) -> Result<Value, CodecError> {
    dispatch!(id, C => C::decode_value(bytes, limits), Err(unknown(id, Origin::Peer)))
}

/// Static facts about a compiled-in built-in codec.
pub fn builtin_info(id: CodecId) -> Option<CodecInfo> {
    dispatch!(id, C => Some(C::INFO), None)
}

/// Facts about every compiled-in built-in codec, in id order.
pub fn builtin_infos() -> impl Iterator<Item = CodecInfo> {
    CodecId::BUILTIN.into_iter().filter_map(builtin_info)
}

#[derive(Clone)]
struct UserCodec {
    name: &'static str,
    codec: Arc<dyn DynCodec>,
}

/// The codecs known to an application: the compiled-in built-ins plus user codecs, and the
/// [`Limits`] applied to every decode.
///
/// Built-ins are dispatched with a `match` on the id into the codec's generic functions
/// (no boxing, no allocation beyond the output); user codecs go through [`Value`] and a
/// `dyn DynCodec`. Cheap to clone (user codecs are shared).
///
/// ```
/// use std::sync::Arc;
/// use wirecall_codecs::{AsDyn, CodecId, Json, Registry, Value};
///
/// let mut reg = Registry::new();
/// // Register any Value-level codec under a user id (here: JSON again, for illustration).
/// reg.register(CodecId::new(200), "json2", Arc::new(AsDyn(Json)))?;
/// let id = reg.by_name("json2").unwrap();
/// let mut out = Vec::new();
/// reg.encode_into(id, &(1, "a"), &mut out)?;
/// assert_eq!(out, b"[1,\"a\"]");
/// let back: (u8, String) = reg.decode(id, &out)?;
/// assert_eq!(back, (1, "a".to_owned()));
/// # Ok::<(), wirecall_codecs::CodecError>(())
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    user: Vec<Option<UserCodec>>,
    limits: Limits,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("codecs", &self.all().to_string())
            .field("limits", &self.limits)
            .finish()
    }
}

const USER_BASE: u8 = 128;

impl Registry {
    /// The compiled-in built-ins and [`Limits::DEFAULT`].
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Returns the registry with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Registry {
        self.limits = limits;
        self
    }

    /// The limits applied to every decode.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replaces the limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Registers a user codec.
    ///
    /// `id` must be in [`CodecId::USER_RANGE`] (128–254) and unused; `name` must be 1–32
    /// characters of `a-z`, `0-9`, `_`, `-`, and must not be a built-in name or one already
    /// registered (names are case-insensitive).
    pub fn register(
        &mut self,
        id: CodecId,
        name: &'static str,
        codec: Arc<dyn DynCodec>,
    ) -> Result<(), CodecError> {
        let refuse = |msg: String| {
            Err(CodecError::new(
                id,
                ErrorKind::Registration,
                Origin::Config,
                msg,
            ))
        };
        if !id.is_user() {
            return refuse(format!(
                "cannot register `{name}` with id {}: user codecs take ids 128-254 \
                 (0-127 are built-in or reserved, 255 is reserved)",
                id.get()
            ));
        }
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return refuse(format!(
                "invalid codec name `{name}`: use 1-32 characters of a-z, 0-9, `_` and `-`"
            ));
        }
        if CodecId::from_builtin_name(name).is_some() || name == "all" {
            return refuse(format!(
                "cannot register `{name}`: the name belongs to a built-in codec"
            ));
        }
        if let Some(other) = self.by_name(name) {
            return refuse(format!(
                "cannot register `{name}` with id {}: the name is already registered with id {}",
                id.get(),
                other.get()
            ));
        }
        let slot = usize::from(id.get() - USER_BASE);
        if self.user.len() <= slot {
            self.user.resize(slot + 1, None);
        }
        if let Some(existing) = &self.user[slot] {
            return refuse(format!(
                "cannot register `{name}` with id {}: the id is already taken by `{}`",
                id.get(),
                existing.name
            ));
        }
        self.user[slot] = Some(UserCodec { name, codec });
        Ok(())
    }

    #[inline]
    fn user(&self, id: CodecId) -> Option<&UserCodec> {
        let slot = usize::from(id.get().checked_sub(USER_BASE)?);
        self.user.get(slot)?.as_ref()
    }

    /// The id of a built-in (compiled-in) or registered codec by name, case-insensitive.
    pub fn by_name(&self, name: &str) -> Option<CodecId> {
        if let Some(id) = CodecId::from_builtin_name(name) {
            return is_compiled_in(id).then_some(id);
        }
        self.user.iter().enumerate().find_map(|(i, u)| {
            u.as_ref()
                .filter(|u| u.name.eq_ignore_ascii_case(name))
                .map(|_| CodecId::new(USER_BASE + i as u8))
        })
    }

    /// The name of a known codec.
    pub fn name(&self, id: CodecId) -> Option<&'static str> {
        if is_compiled_in(id) {
            id.builtin_name()
        } else {
            self.user(id).map(|u| u.name)
        }
    }

    /// Whether `id` is a compiled-in built-in or a registered user codec.
    pub fn contains(&self, id: CodecId) -> bool {
        is_compiled_in(id) || self.user(id).is_some()
    }

    /// Facts about a known codec.
    pub fn info(&self, id: CodecId) -> Option<CodecInfo> {
        if let Some(info) = builtin_info(id) {
            return Some(info);
        }
        let u = self.user(id)?;
        Some(CodecInfo {
            id,
            name: u.name,
            self_describing: u.codec.self_describing(),
            human_readable: u.codec.human_readable(),
            python_interop: u.codec.python_interop(),
            python_module: None,
            struct_as_map: true,
            maintained: true,
            summary: "user codec",
        })
    }

    /// Every known codec.
    pub fn all(&self) -> CodecSet {
        let mut set = CodecSet::all_builtin();
        for (i, u) in self.user.iter().enumerate() {
            if u.is_some() {
                set.insert(CodecId::new(USER_BASE + i as u8));
            }
        }
        set
    }

    /// Parses `"json,mycodec"` accepting built-in and registered names.
    pub fn parse_set(&self, s: &str) -> Result<CodecSet, CodecError> {
        parse_list(s, |name| match self.by_name(name) {
            Some(id) => Ok(id),
            None => parse_builtin_name(name).map_err(|e| {
                if e.kind() == ErrorKind::UnknownCodec && CodecId::from_builtin_name(name).is_none()
                {
                    CodecError::new(
                        CodecId::NONE,
                        ErrorKind::UnknownCodec,
                        Origin::Config,
                        format!(
                            "unknown codec `{name}`; known codecs: {}",
                            self.all().names(|id| self.display_name(id))
                        ),
                    )
                } else {
                    e
                }
            }),
        })
    }

    fn display_name(&self, id: CodecId) -> String {
        self.name(id).map_or_else(|| id.to_string(), str::to_owned)
    }

    /// Prints a set with registered names: `"json,mycodec"`.
    pub fn set_to_string(&self, set: &CodecSet) -> String {
        set.iter()
            .map(|id| self.display_name(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// [`CodecSet::refusal`] with registered names.
    pub fn refusal(&self, accepted: &CodecSet, requested: CodecId) -> String {
        format!(
            "codec `{}` is not accepted by this server; accepted: {}",
            self.display_name(requested),
            accepted.names(|id| self.display_name(id))
        )
    }

    /// Encodes a typed value with codec `id`, appending to `out`.
    #[inline]
    pub fn encode_into<T: Serialize + ?Sized>(
        &self,
        id: CodecId,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        dispatch!(id, C => C::encode_into(value, out), {
            let u = self.user(id).ok_or_else(|| unknown(id, Origin::Config))?;
            let v = to_value(value).map_err(|e| retag(e, id))?;
            u.codec.encode_value(&v, out)
        })
    }

    /// Encodes a typed value with codec `id` into a new buffer.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        id: CodecId,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode_into(id, value, &mut out)?;
        Ok(out)
    }

    /// Decodes a typed value with codec `id` under this registry's limits.
    #[inline]
    pub fn decode<T: DeserializeOwned>(&self, id: CodecId, bytes: &[u8]) -> Result<T, CodecError> {
        dispatch!(id, C => C::decode(bytes, &self.limits), {
            let v = self.decode_value(id, bytes)?;
            from_value(v).map_err(|e| retag(e, id))
        })
    }

    /// Encodes a dynamic value with codec `id`, appending to `out`.
    pub fn encode_value(
        &self,
        id: CodecId,
        value: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        dispatch!(id, C => C::encode_value(value, out), {
            let u = self.user(id).ok_or_else(|| unknown(id, Origin::Config))?;
            u.codec.encode_value(value, out)
        })
    }

    /// Decodes bytes into a dynamic value with codec `id` under this registry's limits.
    pub fn decode_value(&self, id: CodecId, bytes: &[u8]) -> Result<Value, CodecError> {
        dispatch!(id, C => C::decode_value(bytes, &self.limits), {
            let u = self.user(id).ok_or_else(|| unknown(id, Origin::Peer))?;
            self.limits.check_input(id, bytes)?;
            u.codec.decode_value(bytes, &self.limits)
        })
    }
}

/// Attaches the codec id to an error raised by `to_value`/`from_value`.
fn retag(e: CodecError, id: CodecId) -> CodecError {
    CodecError::new(id, e.kind(), e.origin(), e.message().to_owned())
}
