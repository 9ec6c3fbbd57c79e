//! Bulk values: byte arguments and results that travel as raw attachments, never encoded
//! by the codec (SPEC §6.11, Margo's bulk transfer).
//!
//! [`Bulk`] is a byte buffer (a [`bytes::Bytes`]) whose serde implementation cooperates with
//! the engine: while the engine encodes a call's arguments or a result for a native
//! connection, serializing a `Bulk` moves its bytes (by reference count, not by copy) to
//! the frame's attachment and leaves a small placeholder (the value's index) in the codec
//! payload; while the engine decodes a frame that carries bulk values, deserializing a
//! `Bulk` takes its bytes back as a slice of the received frame, without copying. This
//! works the same with every codec, since the codec only ever sees the index.
//!
//! Anywhere else (a user calling `serde_json::to_string` on it, the Pyro5 dialect, whose
//! peers have no attachments, an ordered batch) a `Bulk` serializes as plain bytes
//! (`serialize_bytes`) and deserializes from them, so it is always safe to put in a type.
//!
//! For `Bytes` or `Vec<u8>` fields of your own types, `#[serde(with = "wirecall::bulk")]`
//! gives them the same treatment (a `Vec<u8>` is copied once into shared bytes on the way
//! out; a `Bytes` field is not copied either way).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A byte value that travels as a raw attachment: see the [module documentation](self).
///
/// Cheap to clone (a reference count), dereferences to `[u8]`, and converts from and into
/// [`Bytes`] and `Vec<u8>`.
///
/// ```
/// use wirecall::Bulk;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Upload {
///     name: String,
///     data: Bulk,
///     #[serde(with = "wirecall::bulk")]
///     thumbnail: Vec<u8>,
/// }
///
/// let data = Bulk::from(vec![1u8, 2, 3]);
/// assert_eq!(&data[..], &[1, 2, 3]);
/// // Outside an engine call, it is plain bytes to any serializer.
/// let up = Upload { name: "a".into(), data, thumbnail: vec![9] };
/// let json = serde_json::to_string(&up).unwrap();
/// assert_eq!(json, r#"{"name":"a","data":[1,2,3],"thumbnail":[9]}"#);
/// let back: Upload = serde_json::from_str(&json).unwrap();
/// assert_eq!(&back.data[..], &[1, 2, 3]);
/// ```
///
/// As a method argument or result of a provider, and through a proxy:
///
/// ```no_run
/// use wirecall::Bulk;
///
/// struct Store;
///
/// #[wirecall::provider(service = "store")]
/// impl Store {
///     #[remote]
///     fn echo(&self, data: Bulk) -> Bulk {
///         data // sent back from the received frame, never copied
///     }
/// }
///
/// # async fn call(proxy: wirecall::Proxy) -> Result<(), wirecall::Error> {
/// let big = Bulk::from(vec![0u8; 64 << 20]);
/// let back: Bulk = proxy.call("store_echo")?.arg(&big).call().await?;
/// assert_eq!(back.len(), big.len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bulk(Bytes);

impl Bulk {
    /// An empty value.
    pub const fn new() -> Bulk {
        Bulk(Bytes::new())
    }

    /// The bytes, shared.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The bytes, shared (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl fmt::Debug for Bulk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bulk({} bytes)", self.0.len())
    }
}

impl Deref for Bulk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bulk {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for Bulk {
    fn from(b: Bytes) -> Bulk {
        Bulk(b)
    }
}

impl From<Vec<u8>> for Bulk {
    fn from(v: Vec<u8>) -> Bulk {
        Bulk(Bytes::from(v))
    }
}

impl From<&'static [u8]> for Bulk {
    fn from(s: &'static [u8]) -> Bulk {
        Bulk(Bytes::from_static(s))
    }
}

impl From<Bulk> for Bytes {
    fn from(b: Bulk) -> Bytes {
        b.0
    }
}

impl From<Bulk> for Vec<u8> {
    fn from(b: Bulk) -> Vec<u8> {
        Vec::from(b.0)
    }
}

thread_local! {
    /// Whether the engine is encoding for a native connection (bulk values go to `SINK`).
    static SINK_ON: Cell<bool> = const { Cell::new(false) };
    /// How many values `SINK` holds (read without touching it).
    static SINK_LEN: Cell<usize> = const { Cell::new(0) };
    /// While `SINK_ON`: the bulk values serialized so far.
    static SINK: RefCell<Vec<Bytes>> = const { RefCell::new(Vec::new()) };
    /// While the engine decodes a frame in bulk mode: its bulk values.
    static SOURCE: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
}

/// Ends an outermost [`collect`]: collecting off, leftovers (after a panic) dropped.
struct StopCollecting;

impl Drop for StopCollecting {
    fn drop(&mut self) {
        SINK_ON.set(false);
        if SINK_LEN.replace(0) != 0 {
            SINK.with(|s| {
                if let Ok(mut v) = s.try_borrow_mut() {
                    v.clear();
                }
            });
        }
    }
}

/// Runs `f` (an encode) with bulk values collected instead of encoded; returns what `f`
/// returned and the values collected (`None` when no `Bulk` was serialized).
///
/// Costs two flag writes when no `Bulk` is serialized (every small call's answer pays it).
#[inline]
pub(crate) fn collect<R>(f: impl FnOnce() -> R) -> (R, Option<Vec<Bytes>>) {
    let nested = SINK_ON.replace(true);
    if !nested {
        // Also when `f` panics (a user's `Serialize`): collecting stops and what was
        // collected is dropped.
        let _stop = StopCollecting;
        let r = f();
        if SINK_LEN.get() == 0 {
            return (r, None);
        }
        SINK_LEN.set(0);
        let parts = SINK.with(|s| s.try_borrow_mut().map(|mut v| std::mem::take(&mut *v)).ok());
        return (r, parts.filter(|p| !p.is_empty()));
    }
    let outer_len = SINK_LEN.replace(0);
    // An enclosing collect's values so far are set aside (nested encodes are rare).
    let outer = if nested {
        SINK.with(|s| s.try_borrow_mut().map(|mut v| std::mem::take(&mut *v)).ok())
    } else {
        None
    };
    let r = f();
    SINK_ON.set(nested);
    SINK_LEN.set(outer_len);
    let parts = SINK.with(|s| {
        let mut v = s.try_borrow_mut().ok()?;
        Some(std::mem::replace(&mut *v, outer.unwrap_or_default()))
    });
    (r, parts.filter(|p| !p.is_empty()))
}

/// Runs `f` (a decode) with `parts` as the frame's bulk values, when the frame is in bulk
/// mode (`Some`); `None` runs it as it is (byte values are inline).
#[inline]
pub(crate) fn with_parts<R>(parts: Option<&[Bytes]>, f: impl FnOnce() -> R) -> R {
    let Some(parts) = parts else {
        return f();
    };
    let outer = SOURCE.with(|s| s.replace(Some(parts.to_vec())));
    let r = f();
    SOURCE.with(|s| s.replace(outer));
    r
}

/// Collected bulk values as a frame carries them: the `wc.bulk` lengths and the
/// attachment (the one value itself when there is one, so it is never copied).
pub(crate) fn attachment(parts: Vec<Bytes>) -> Result<(Vec<u32>, Bytes), String> {
    let mut lengths = Vec::with_capacity(parts.len());
    let mut total = 0u64;
    for p in &parts {
        let len = u32::try_from(p.len()).map_err(|_| {
            format!(
                "a bulk value of {} bytes is over the 4 GiB a frame can carry",
                p.len()
            )
        })?;
        lengths.push(len);
        total += u64::from(len);
    }
    if total > u64::from(u32::MAX) {
        return Err(format!(
            "bulk values of {total} bytes in all are over the 4 GiB a frame can carry"
        ));
    }
    let attachment = match <[Bytes; 1]>::try_from(parts) {
        Ok([one]) => one,
        Err(parts) => {
            let mut all = bytes::BytesMut::with_capacity(total as usize);
            for p in &parts {
                all.extend_from_slice(p);
            }
            all.freeze()
        }
    };
    Ok((lengths, attachment))
}

/// Serializes `bytes` as a bulk value: moved to the attachment inside an engine encode,
/// plain bytes anywhere else.
fn serialize_bulk<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    let index = SINK_ON.get().then(|| {
        SINK.with(|sink| {
            let mut parts = sink.try_borrow_mut().ok()?;
            parts.push(bytes.clone());
            SINK_LEN.set(parts.len());
            Some(parts.len() - 1)
        })
    });
    let index = index.flatten();
    match index {
        Some(i) => match u32::try_from(i) {
            Ok(i) => s.serialize_u32(i),
            Err(_) => Err(serde::ser::Error::custom(
                "too many bulk values in one frame",
            )),
        },
        None => s.serialize_bytes(bytes),
    }
}

/// Deserializes a bulk value: a placeholder taken from the frame's attachment inside an
/// engine decode of a frame in bulk mode, plain bytes anywhere else.
fn deserialize_bulk<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let active = SOURCE.with(|s| s.try_borrow().map(|s| s.is_some()).unwrap_or(false));
    if !active {
        return d.deserialize_byte_buf(BytesVisitor);
    }
    let i = u32::deserialize(d)?;
    SOURCE.with(|s| {
        let s = s.borrow();
        let parts = s.as_deref().unwrap_or_default();
        parts.get(i as usize).cloned().ok_or_else(|| {
            D::Error::custom(format!(
                "bulk placeholder {i} names no value: the frame's attachment carries {} bulk value{}",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" }
            ))
        })
    })
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        // Bounded by what the codec was given (its input limit), as for any sequence.
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(Bytes::from(v))
    }
}

impl Serialize for Bulk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_bulk(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Bulk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bulk, D::Error> {
        deserialize_bulk(d).map(Bulk)
    }
}

/// Byte types a `#[serde(with = "wirecall::bulk")]` field may have.
pub trait BulkBytes: Sized {
    /// The bytes, shared (cloned by reference count where the type allows).
    fn to_bulk(&self) -> Bytes;
    /// Back from received bytes.
    fn from_bulk(b: Bytes) -> Self;
}

impl BulkBytes for Bytes {
    fn to_bulk(&self) -> Bytes {
        self.clone()
    }
    fn from_bulk(b: Bytes) -> Self {
        b
    }
}

impl BulkBytes for Bulk {
    fn to_bulk(&self) -> Bytes {
        self.0.clone()
    }
    fn from_bulk(b: Bytes) -> Self {
        Bulk(b)
    }
}

impl BulkBytes for Vec<u8> {
    /// Copied once into shared bytes.
    fn to_bulk(&self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
    fn from_bulk(b: Bytes) -> Self {
        Vec::from(b)
    }
}

/// `#[serde(with = "wirecall::bulk")]`: serializes a byte field as a bulk value.
pub fn serialize<T: BulkBytes, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    serialize_bulk(&value.to_bulk(), s)
}

/// `#[serde(with = "wirecall::bulk")]`: deserializes a byte field from a bulk value.
pub fn deserialize<'de, T: BulkBytes, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    deserialize_bulk(d).map(T::from_bulk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_an_engine_encode_values_move_to_the_attachment() {
        let a = Bulk::from(vec![1u8; 5000]);
        let b = Bulk::new();
        let (json, parts) = collect(|| serde_json::to_string(&(&a, "x", &b)).unwrap());
        assert_eq!(json, r#"[0,"x",1]"#);
        let parts = parts.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].as_ptr(), a.as_ptr(), "moved, not copied");
        let (lengths, att) = attachment(parts.clone()).unwrap();
        assert_eq!(lengths, [5000, 0]);
        assert_eq!(att.len(), 5000);
        // Decoding takes them back from the parts.
        let (x, s, y): (Bulk, String, Bulk) =
            with_parts(Some(&parts), || serde_json::from_str(&json).unwrap());
        assert_eq!((x.as_ptr(), &s[..], y.len()), (a.as_ptr(), "x", 0));
        // Nothing collected when there is no Bulk; the side channel is off afterwards.
        assert!(collect(|| serde_json::to_string(&1).unwrap()).1.is_none());
        assert_eq!(serde_json::to_string(&a).unwrap().len(), 5000 * 2 + 1);
    }

    #[test]
    fn a_placeholder_past_the_values_is_a_clear_error() {
        let parts = [Bytes::from_static(b"a")];
        let e = with_parts(Some(&parts), || serde_json::from_str::<Bulk>("3")).unwrap_err();
        assert!(
            e.to_string().contains("bulk placeholder 3 names no value"),
            "{e}"
        );
    }

    #[test]
    fn outside_the_engine_it_is_plain_bytes() {
        let b = Bulk::from(&b"hi"[..]);
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(j, "[104,105]");
        assert_eq!(serde_json::from_str::<Bulk>(&j).unwrap(), b);
    }
}
