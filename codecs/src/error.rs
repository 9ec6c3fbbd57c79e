//! The one error type of the crate.

use std::borrow::Cow;
use std::fmt;

use crate::CodecId;

/// What went wrong, in broad strokes. Match on this to decide how to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A local value could not be written (a serializer error, e.g. a map key the format
    /// cannot carry or a `Serialize` impl that failed).
    Encode,
    /// The bytes are not a valid encoding of the requested type: truncated, garbage, wrong
    /// type, invalid UTF-8, trailing bytes after the value.
    Decode,
    /// The value is valid but this codec cannot carry it (an integer wider than the format,
    /// NaN in JSON encoded through a typed path that forbids it, an unsupported CBOR tag...).
    Unsupported,
    /// A [`Limits`](crate::Limits) bound (input size or nesting depth) was exceeded.
    LimitExceeded,
    /// The codec needs the receiver's Rust type; it cannot decode into a dynamic [`Value`](crate::Value).
    NotSelfDescribing,
    /// The codec id or name is unknown, or the codec is not compiled in.
    UnknownCodec,
    /// The codec is known but not in the accepted set.
    NotAccepted,
    /// A user codec could not be registered (id outside the user range, duplicate id or name).
    Registration,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Encode => "encode error",
            ErrorKind::Decode => "decode error",
            ErrorKind::Unsupported => "unsupported value",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::NotSelfDescribing => "not self-describing",
            ErrorKind::UnknownCodec => "unknown codec",
            ErrorKind::NotAccepted => "codec not accepted",
            ErrorKind::Registration => "codec registration refused",
        }
    }
}

/// Who caused an error: the rustls habit of saying whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The bytes came from the peer (or a file): the peer sent something wrong.
    Peer,
    /// The local value or the local program: the caller asked for something impossible.
    Local,
    /// Local configuration: an unknown codec name, a bad registration.
    Config,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Peer => "caused by the peer's bytes",
            Origin::Local => "caused by the local value",
            Origin::Config => "caused by the local configuration",
        }
    }
}

/// The error type of every operation in this crate.
///
/// It says which codec failed, what kind of failure it was, who caused it and, in its
/// message, what to do about it. Data errors are deterministic, so
/// [`CodecError::is_retryable`] is always `false`: sending the same bytes again gives the
/// same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    codec: CodecId,
    kind: ErrorKind,
    origin: Origin,
    message: Cow<'static, str>,
}

impl CodecError {
    /// Builds an error. Codec implementations (including user codecs) use this.
    pub fn new(
        codec: CodecId,
        kind: ErrorKind,
        origin: Origin,
        message: impl Into<Cow<'static, str>>,
    ) -> CodecError {
        CodecError {
            codec,
            kind,
            origin,
            message: message.into(),
        }
    }

    /// A decode error caused by the peer's bytes.
    pub fn decode(codec: CodecId, message: impl fmt::Display) -> CodecError {
        CodecError::new(codec, ErrorKind::Decode, Origin::Peer, message.to_string())
    }

    /// An encode error caused by the local value.
    pub fn encode(codec: CodecId, message: impl fmt::Display) -> CodecError {
        CodecError::new(codec, ErrorKind::Encode, Origin::Local, message.to_string())
    }

    /// A value this codec cannot carry; `origin` says whether it was being encoded
    /// ([`Origin::Local`]) or was found in decoded bytes ([`Origin::Peer`]).
    pub fn unsupported(codec: CodecId, origin: Origin, message: impl fmt::Display) -> CodecError {
        CodecError::new(codec, ErrorKind::Unsupported, origin, message.to_string())
    }

    /// A limit was exceeded by the peer's bytes.
    pub fn limit(codec: CodecId, message: impl fmt::Display) -> CodecError {
        CodecError::new(
            codec,
            ErrorKind::LimitExceeded,
            Origin::Peer,
            message.to_string(),
        )
    }

    /// The codec cannot decode without the receiver's type.
    pub fn not_self_describing(codec: CodecId) -> CodecError {
        CodecError::new(
            codec,
            ErrorKind::NotSelfDescribing,
            Origin::Local,
            format!(
                "{codec} is not self-describing: its bytes carry no type information, so they \
                 cannot be decoded into a dynamic Value; decode into the concrete Rust type \
                 (decode::<T>) or use a self-describing codec (json, msgpack, cbor, ron, serpent)"
            ),
        )
    }

    /// The codec id the error is about ([`CodecId::NONE`] when no codec is involved, e.g.
    /// an unknown name).
    pub fn codec(&self) -> CodecId {
        self.codec
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Who caused it.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The detail message (without the codec/kind prefix that `Display` adds).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same operation could succeed. Always `false`: codec errors are
    /// properties of the data or the configuration, not of the moment.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// True when the peer's bytes caused the error.
    pub fn is_peer_fault(&self) -> bool {
        self.origin == Origin::Peer
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.codec == CodecId::NONE {
            write!(
                f,
                "{} ({}): {}",
                self.kind.as_str(),
                self.origin.as_str(),
                self.message
            )
        } else {
            write!(
                f,
                "{} {} ({}): {}",
                self.codec,
                self.kind.as_str(),
                self.origin.as_str(),
                self.message
            )
        }
    }
}

impl std::error::Error for CodecError {}

/// Maps a serde error message from a decoder into a typed error, recognising the limit
/// messages the format crates emit.
pub(crate) fn decode_err(codec: CodecId, e: impl fmt::Display) -> CodecError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("recursion limit")
        || lower.contains("depth limit")
        || lower.contains("recursion_limit")
        || lower.contains("exceeded recursion")
        || lower.contains("nesting depth")
    {
        CodecError::limit(
            codec,
            format!("{text}; the input nests deeper than allowed (raise Limits::max_depth if it is legitimate)"),
        )
    } else {
        CodecError::decode(codec, text)
    }
}

/// Maps a serializer error into a typed encode error.
pub(crate) fn encode_err(codec: CodecId, e: impl fmt::Display) -> CodecError {
    CodecError::encode(codec, e)
}

/// Lets [`to_value`](crate::to_value) (and other serializers in this crate) report errors.
impl serde::ser::Error for CodecError {
    fn custom<T: fmt::Display>(msg: T) -> CodecError {
        CodecError::encode(CodecId::NONE, msg)
    }
}

/// Lets [`from_value`](crate::from_value) report type mismatches; they count as the peer's
/// fault because a `Value` normally comes from decoded bytes.
impl serde::de::Error for CodecError {
    fn custom<T: fmt::Display>(msg: T) -> CodecError {
        CodecError::decode(CodecId::NONE, msg)
    }
}
