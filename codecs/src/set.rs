//! `CodecSet`: the set of codecs a server accepts.

use std::fmt;
use std::str::FromStr;

use crate::{CodecError, CodecId, ErrorKind, Origin};

/// A set of codec ids (a 256-bit bitset): what a server accepts.
///
/// Parses from and prints to a comma-separated list of names, `"json,msgpack"` (names are
/// case-insensitive, spaces around names are ignored, `all` means every compiled-in
/// built-in codec, and user ids print and parse as `codec#200`). Use
/// [`Registry::parse_set`](crate::Registry::parse_set) to accept user codec names too.
///
/// ```
/// use wirecall_codecs::{CodecId, CodecSet};
/// let set: CodecSet = "json, MsgPack".parse()?;
/// assert!(set.contains(CodecId::JSON));
/// assert_eq!(set.to_string(), "json,msgpack");
/// assert_eq!(
///     set.refusal(CodecId::CBOR),
///     "codec `cbor` is not accepted by this server; accepted: json, msgpack"
/// );
/// # Ok::<(), wirecall_codecs::CodecError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CodecSet([u64; 4]);

impl CodecSet {
    /// The empty set.
    pub const EMPTY: CodecSet = CodecSet([0; 4]);

    /// The empty set.
    pub const fn new() -> CodecSet {
        CodecSet::EMPTY
    }

    /// Every built-in codec compiled into this build (all eight with default features).
    pub fn all_builtin() -> CodecSet {
        CodecId::BUILTIN
            .into_iter()
            .filter(|id| is_compiled_in(*id))
            .collect()
    }

    /// Whether `id` is in the set.
    #[inline]
    pub const fn contains(&self, id: CodecId) -> bool {
        let b = id.get() as usize;
        self.0[b >> 6] & (1u64 << (b & 63)) != 0
    }

    /// Adds `id`; returns whether it was newly added.
    pub fn insert(&mut self, id: CodecId) -> bool {
        let had = self.contains(id);
        let b = id.get() as usize;
        self.0[b >> 6] |= 1u64 << (b & 63);
        !had
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: CodecId) -> bool {
        let had = self.contains(id);
        let b = id.get() as usize;
        self.0[b >> 6] &= !(1u64 << (b & 63));
        had
    }

    /// Returns the set with `id` added (builder style).
    pub fn with(mut self, id: CodecId) -> CodecSet {
        self.insert(id);
        self
    }

    /// The number of ids in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when no id is in the set.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The ids in the set, in id order.
    pub fn iter(&self) -> impl Iterator<Item = CodecId> + '_ {
        (0u16..256)
            .map(|b| CodecId::new(b as u8))
            .filter(move |id| self.contains(*id))
    }

    /// The ids in both sets.
    pub fn intersection(&self, other: &CodecSet) -> CodecSet {
        let mut out = [0; 4];
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.0[i] & other.0[i];
        }
        CodecSet(out)
    }

    /// The ids in either set.
    pub fn union(&self, other: &CodecSet) -> CodecSet {
        let mut out = [0; 4];
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.0[i] | other.0[i];
        }
        CodecSet(out)
    }

    /// Names of the ids, `", "`-separated, for messages.
    pub(crate) fn names(&self, name: impl Fn(CodecId) -> String) -> String {
        let v: Vec<String> = self.iter().map(name).collect();
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    }

    /// The user-facing refusal text for a codec outside the set, e.g.
    /// "codec `cbor` is not accepted by this server; accepted: json, msgpack".
    pub fn refusal(&self, requested: CodecId) -> String {
        format!(
            "codec `{requested}` is not accepted by this server; accepted: {}",
            self.names(|id| id.to_string())
        )
    }

    /// `Ok` if `id` is accepted, else an [`ErrorKind::NotAccepted`] error (caused by the
    /// peer) carrying [`CodecSet::refusal`] as its message.
    #[inline]
    pub fn check(&self, id: CodecId) -> Result<(), CodecError> {
        if self.contains(id) {
            Ok(())
        } else {
            Err(CodecError::new(
                id,
                ErrorKind::NotAccepted,
                Origin::Peer,
                self.refusal(id),
            ))
        }
    }
}

/// True when the built-in codec `id` is compiled into this build.
pub fn is_compiled_in(id: CodecId) -> bool {
    dispatch!(id, _C => true, false)
}

/// The names every build knows, for error messages.
pub(crate) fn known_builtin_names() -> String {
    CodecSet::all_builtin().names(|id| id.to_string())
}

/// Parses one name: a built-in name or `codec#N`.
pub(crate) fn parse_builtin_name(name: &str) -> Result<CodecId, CodecError> {
    if let Some(id) = CodecId::from_builtin_name(name) {
        if is_compiled_in(id) {
            return Ok(id);
        }
        return Err(CodecError::new(
            id,
            ErrorKind::UnknownCodec,
            Origin::Config,
            format!(
                "codec `{id}` is not compiled in; enable the `{id}` feature of wirecall-codecs \
                 (available: {})",
                known_builtin_names()
            ),
        ));
    }
    if let Some(n) = name.strip_prefix("codec#") {
        if let Ok(raw) = n.parse::<u8>() {
            return Ok(CodecId::new(raw));
        }
    }
    Err(CodecError::new(
        CodecId::NONE,
        ErrorKind::UnknownCodec,
        Origin::Config,
        format!(
            "unknown codec `{name}`; known codecs: {}",
            known_builtin_names()
        ),
    ))
}

pub(crate) fn parse_list(
    s: &str,
    one: impl Fn(&str) -> Result<CodecId, CodecError>,
) -> Result<CodecSet, CodecError> {
    let mut set = CodecSet::EMPTY;
    for part in s.split(',') {
        let name = part.trim();
        if name.is_empty() {
            continue;
        }
        if name.eq_ignore_ascii_case("all") {
            set = set.union(&CodecSet::all_builtin());
            continue;
        }
        set.insert(one(name)?);
    }
    if set.is_empty() {
        return Err(CodecError::new(
            CodecId::NONE,
            ErrorKind::UnknownCodec,
            Origin::Config,
            format!(
                "empty codec list `{s}`; name at least one of: {}",
                known_builtin_names()
            ),
        ));
    }
    Ok(set)
}

impl FromStr for CodecSet {
    type Err = CodecError;
    /// Parses `"json,msgpack"`; see the type docs. An empty list is an error.
    fn from_str(s: &str) -> Result<CodecSet, CodecError> {
        parse_list(s, parse_builtin_name)
    }
}

impl fmt::Display for CodecSet {
    /// Prints `"json,msgpack"` (ids in order, no spaces); the empty set prints nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CodecSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodecSet({self})")
    }
}

impl FromIterator<CodecId> for CodecSet {
    fn from_iter<I: IntoIterator<Item = CodecId>>(iter: I) -> CodecSet {
        let mut s = CodecSet::EMPTY;
        for id in iter {
            s.insert(id);
        }
        s
    }
}

impl Extend<CodecId> for CodecSet {
    fn extend<I: IntoIterator<Item = CodecId>>(&mut self, iter: I) {
        for id in iter {
            self.insert(id);
        }
    }
}
