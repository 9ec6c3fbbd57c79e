//! The serpent error type: what went wrong, and where in the input.

use std::fmt;

/// What kind of problem a [`SerpentError`] reports.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SerpentErrorKind {
    /// The input is not valid UTF-8 (Python decodes serpent data as strict UTF-8).
    InvalidUtf8,
    /// The input contains a raw NUL character, which Python's serpent refuses.
    NulCharacter,
    /// The input ended in the middle of an expression.
    UnexpectedEof,
    /// The input is not a Python literal expression of the kind serpent allows.
    Syntax,
    /// A string or bytes literal is not terminated on its line (or at all).
    UnterminatedString,
    /// A backslash escape inside a string is malformed (e.g. `\x4` or `\U00110000`).
    BadEscape,
    /// A valid Python escape that this implementation does not support (`\N{...}`), or a
    /// lone surrogate code point that a Rust `String` cannot hold.
    UnsupportedEscape,
    /// A number literal is malformed or outside what Python accepts (e.g. more than 4300
    /// decimal digits, or leading zeros).
    BadNumber,
    /// Containers are nested deeper than the configured maximum.
    TooDeep,
    /// Data after the one expression a serpent document holds.
    TrailingCharacters,
    /// The parsed value does not fit the Rust type that was asked for.
    TypeMismatch,
    /// A value that serpent (and Python) cannot encode, e.g. `None` or a list as a dict key.
    Unsupported,
    /// A message from a `Serialize` / `Deserialize` implementation.
    Custom,
}

/// A position in the input: byte offset plus 1-based line and column (column counted in
/// characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// Byte offset from the start of the input.
    pub offset: usize,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// Computes line and column of `offset` in `src` (clamped to the input length).
    pub fn locate(src: &[u8], offset: usize) -> Position {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or(&[]);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = before
            .get(line_start..)
            .unwrap_or(&[])
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count()
            + 1;
        Position {
            offset,
            line,
            column,
        }
    }
}

/// An error from encoding or decoding serpent.
///
/// Decoding errors carry the [`Position`] in the input where the problem was found;
/// encoding errors carry none.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct SerpentError {
    kind: SerpentErrorKind,
    message: String,
    position: Option<Position>,
    /// Where in the value an encoding error happened, innermost segment first.
    path_rev: Vec<String>,
}

impl SerpentError {
    /// Creates an error without a position.
    pub fn new(kind: SerpentErrorKind, message: impl Into<String>) -> Self {
        SerpentError {
            kind,
            message: message.into(),
            position: None,
            path_rev: Vec::new(),
        }
    }

    /// Creates an error at byte `offset` of `src`.
    pub fn at(
        kind: SerpentErrorKind,
        message: impl Into<String>,
        src: &[u8],
        offset: usize,
    ) -> Self {
        SerpentError {
            kind,
            message: message.into(),
            position: Some(Position::locate(src, offset)),
            path_rev: Vec::new(),
        }
    }

    /// Fills in the position if the error has none yet.
    pub(crate) fn or_at(mut self, src: &[u8], offset: usize) -> Self {
        if self.position.is_none() {
            self.position = Some(Position::locate(src, offset));
        }
        self
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> SerpentErrorKind {
        self.kind
    }

    /// Where in the input the problem was found (decoding errors only).
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// Adds an enclosing path segment (`[3]`, `.name`, `['key']`) to an encoding error.
    #[cold]
    pub(crate) fn in_path(mut self, segment: String) -> Self {
        self.path_rev.push(segment);
        self
    }

    /// For encoding errors: where in the value the problem is, e.g. `$.items[3]['id']`
    /// (`None` when the problem is the top-level value itself, and for decoding errors).
    pub fn path(&self) -> Option<String> {
        if self.path_rev.is_empty() {
            return None;
        }
        let mut p = String::from("$");
        for seg in self.path_rev.iter().rev() {
            p.push_str(seg);
        }
        Some(p)
    }

    /// The human-readable description, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SerpentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("serpent: ")?;
        f.write_str(&self.message)?;
        if let Some(path) = self.path() {
            write!(f, " at {path}")?;
        }
        if let Some(p) = self.position {
            write!(
                f,
                " at line {} column {} (byte {})",
                p.line, p.column, p.offset
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for SerpentError {}

impl serde::ser::Error for SerpentError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerpentError::new(SerpentErrorKind::Custom, msg.to_string())
    }
}

impl serde::de::Error for SerpentError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerpentError::new(SerpentErrorKind::Custom, msg.to_string())
    }

    fn invalid_type(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        SerpentError::new(
            SerpentErrorKind::TypeMismatch,
            format!("invalid type: {unexp}, expected {exp}"),
        )
    }

    fn invalid_value(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Self {
        SerpentError::new(
            SerpentErrorKind::TypeMismatch,
            format!("invalid value: {unexp}, expected {exp}"),
        )
    }

    fn invalid_length(len: usize, exp: &dyn serde::de::Expected) -> Self {
        SerpentError::new(
            SerpentErrorKind::TypeMismatch,
            format!("invalid length {len}, expected {exp}"),
        )
    }
}
