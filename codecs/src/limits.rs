//! Bounds applied to untrusted input before and while decoding.

use crate::{CodecError, CodecId};

/// Bounds on untrusted input, checked by every `decode` and `decode_value`.
///
/// * `max_input`: inputs longer than this are refused before any decoding starts.
/// * `max_depth`: the number of nested containers (lists, maps, structs, enum payloads)
///   allowed. JSON's typed path is additionally capped at serde_json's built-in 128.
///
/// No decoder allocates from a length declared in the input beyond what the input itself
/// contains (each codec module documents how), so `max_input` also bounds memory use.
///
/// Decoding recurses once or twice per nesting level, so `max_depth` is also what keeps a
/// hostile input from overflowing the stack. The default is safe on any thread; limits of
/// several hundred levels need a thread with a larger stack (in debug builds a few KiB
/// per level).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The deepest nesting accepted.
    pub max_depth: usize,
    /// The largest input accepted, in bytes.
    pub max_input: usize,
}

impl Limits {
    /// The defaults: depth 128, input 64 MiB.
    pub const DEFAULT: Limits = Limits {
        max_depth: 128,
        max_input: 64 << 20,
    };

    /// Returns these limits with another maximum depth.
    pub const fn with_max_depth(mut self, max_depth: usize) -> Limits {
        self.max_depth = max_depth;
        self
    }

    /// Returns these limits with another maximum input size in bytes.
    pub const fn with_max_input(mut self, max_input: usize) -> Limits {
        self.max_input = max_input;
        self
    }

    /// Refuses `bytes` if it is longer than `max_input`.
    #[inline]
    pub fn check_input(&self, codec: CodecId, bytes: &[u8]) -> Result<(), CodecError> {
        if bytes.len() > self.max_input {
            return Err(CodecError::limit(
                codec,
                format!(
                    "input of {} bytes exceeds the maximum of {} bytes (raise Limits::max_input if it is legitimate)",
                    bytes.len(),
                    self.max_input
                ),
            ));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}
