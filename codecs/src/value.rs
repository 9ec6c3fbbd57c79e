//! A dynamic value covering what every codec can carry, for tools that encode, decode and
//! transcode without Rust types.

/// A dynamic value: the union of what the codecs can carry.
///
/// Integers in the `i128` range are [`Value::Int`]; larger ones are [`Value::BigInt`]
/// (normalised: a `BigInt` never holds a value that fits `i128`). Maps keep their order and
/// accept any key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null / None / nil.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits in 128 bits.
    Int(i128),
    /// An integer outside the `i128` range.
    BigInt(num_bigint::BigInt),
    /// A 64-bit float, including NaN and the infinities.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list / array / sequence.
    List(Vec<Value>),
    /// A tuple (distinct from a list where the format can tell them apart, e.g. serpent).
    Tuple(Vec<Value>),
    /// A set (serpent `{1,2}`); formats without sets carry it as a list.
    Set(Vec<Value>),
    /// An ordered map with keys of any type.
    Map(Vec<(Value, Value)>),
}
