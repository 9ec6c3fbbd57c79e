//! Per-frame compression (SPEC §6.9): the handshake values, the compressed form of a
//! section, and the size guard that refuses a frame inflating past the receiver's limit
//! before anything is decompressed.
//!
//! Pure computation, no IO. The algorithm is zstd, from the `zstd` crate (bindings to the
//! reference C library, built with the `cc` crate: it needs only the C compiler Rust already
//! uses for linking, no system package). It is the crate `wirecall-cli pick` already uses to
//! size payloads, so the workspace gains no dependency. The pure-Rust `ruzstd` (0.8.3) was
//! measured beside it on the 1 MiB JSON payload of `perf --profile compression` and
//! rejected: its encoder (its fastest level) took 4x the reference library's level-3 time
//! for output 34% larger, and its decoder 9x the time (figures in `benches/README.md`);
//! this feature exists to trade CPU for bytes, so both matter. Behind the cargo
//! feature `zstd` (default on): without it no algorithm is available and a configuration
//! asking for one is refused.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::frame::{ExtensionTag, Extensions};
use crate::wire::{CompressionId, HEADER_LEN};

/// Bytes before the compressed data of a section: the algorithm id and the decompressed
/// length (u32, big-endian).
pub(crate) const SECTION_PREFIX: usize = 5;

/// A side's compression settings (SPEC §6.9): which algorithms it accepts (and offers, in
/// a client's HELLO), and when it compresses what it sends. Off by default.
///
/// What this side *receives* compressed is the peer's choice within the algorithms in
/// force; what it *sends* compressed is its own: data frames (CALL, REPLY, STREAM_ITEM)
/// whose payload and kwargs together are at least [`threshold`](Self::threshold) bytes are
/// compressed with the first algorithm in force, at [`level`](Self::level), and sent as
/// they are when compressing does not make them smaller.
///
/// ```
/// use wirecall_protocol::Compression;
/// let c = Compression::zstd().with_level(1).with_threshold(64 << 10);
/// assert_eq!((c.level, c.threshold), (1, 65536));
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Compression {
    /// Algorithms accepted, most preferred first; empty turns compression off (the
    /// extension is not offered, or not answered).
    pub algorithms: Vec<CompressionId>,
    /// The zstd level this side compresses with (1 fastest ... 19 smallest; negative
    /// levels are faster still). Default [`Compression::DEFAULT_LEVEL`].
    pub level: i32,
    /// Payload plus kwargs of at least this many bytes are compressed when sent; smaller
    /// frames travel as they are. `usize::MAX` accepts compressed frames but never sends
    /// one. Default [`Compression::DEFAULT_THRESHOLD`].
    pub threshold: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::off()
    }
}

impl Compression {
    /// The default threshold: 4 KiB (below it, compressing costs more time than the bytes
    /// it saves on any network wirecall targets).
    pub const DEFAULT_THRESHOLD: usize = 4096;
    /// The default zstd level: 3, zstd's own default (about 3x smaller JSON at several
    /// hundred MB/s).
    pub const DEFAULT_LEVEL: i32 = 3;

    /// No compression: nothing offered or accepted.
    pub fn off() -> Compression {
        Compression {
            algorithms: Vec::new(),
            level: Self::DEFAULT_LEVEL,
            threshold: Self::DEFAULT_THRESHOLD,
        }
    }

    /// zstd at the default level and threshold.
    pub fn zstd() -> Compression {
        Compression {
            algorithms: vec![CompressionId::ZSTD],
            ..Compression::off()
        }
    }

    /// The same, compressing at zstd `level`.
    #[must_use]
    pub fn with_level(mut self, level: i32) -> Compression {
        self.level = level;
        self
    }

    /// The same, compressing payloads (plus kwargs) of at least `bytes`.
    #[must_use]
    pub fn with_threshold(mut self, bytes: usize) -> Compression {
        self.threshold = bytes;
        self
    }

    /// Whether no algorithm is accepted.
    pub fn is_off(&self) -> bool {
        self.algorithms.is_empty()
    }

    /// Checks that every algorithm is one this build can run, without repeats.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        for (i, a) in self.algorithms.iter().enumerate() {
            if *a != CompressionId::ZSTD {
                return Err(ProtocolError::InvalidArgument(
                    "unknown compression algorithm; this version knows zstd (id 1)",
                ));
            }
            if !cfg!(feature = "zstd") {
                return Err(ProtocolError::InvalidArgument(
                    "zstd compression needs the `zstd` feature of wirecall-protocol",
                ));
            }
            if self.algorithms[..i].contains(a) {
                return Err(ProtocolError::InvalidArgument(
                    "a compression algorithm is listed twice",
                ));
            }
        }
        Ok(())
    }

    /// Writes this side's list into the compression extension (tag 1) of `ext`; when
    /// compression is off, `ext` is left as it is.
    pub(crate) fn write_extension(&self, ext: &mut Extensions) -> Result<(), ProtocolError> {
        if self.is_off() {
            return Ok(());
        }
        let ids: Vec<u8> = self.algorithms.iter().map(|a| a.0).collect();
        ext.set(ExtensionTag::COMPRESSION, ids)
    }
}

/// The algorithm ids of a compression extension value (one byte each).
pub(crate) fn parse_list(value: &[u8]) -> Vec<CompressionId> {
    value.iter().map(|b| CompressionId(*b)).collect()
}

/// The WELCOME answer to a client's compression offer (SPEC §6.9): the ids of `offered`
/// that `accepted` holds, in the client's order, without repeats; `None` (leave the tag
/// out: compression off) when none is left.
pub(crate) fn negotiate(offered: &[u8], accepted: &[u8]) -> Option<Bytes> {
    let mut out: Vec<u8> = Vec::new();
    for id in offered {
        if accepted.contains(id) && !out.contains(id) {
            out.push(*id);
        }
    }
    (!out.is_empty()).then(|| Bytes::from(out))
}

/// The send half of compression in force: compresses the sections of outgoing data frames.
pub(crate) struct Compressor {
    algorithm: CompressionId,
    level: i32,
    threshold: usize,
    #[cfg(feature = "zstd")]
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("algorithm", &self.algorithm)
            .field("level", &self.level)
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Compressor {
    /// Compresses with `algorithm` (one in force) as `settings` say; `None` when this side
    /// never sends compressed frames.
    pub(crate) fn new(algorithm: CompressionId, settings: &Compression) -> Option<Compressor> {
        if settings.threshold == usize::MAX {
            return None;
        }
        Some(Compressor {
            algorithm,
            level: settings.level,
            threshold: settings.threshold,
            #[cfg(feature = "zstd")]
            zstd: None,
        })
    }

    /// Whether sections of `len` bytes (payload plus kwargs) are worth compressing.
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.threshold && len > 0
    }

    /// The compressed form of `payload` and `kwargs` (empty stays empty), or `None` when
    /// compressing failed or did not make them smaller: the frame is then sent as it is.
    pub(crate) fn compress(&mut self, payload: &[u8], kwargs: &[u8]) -> Option<(Bytes, Bytes)> {
        let p = self.section(payload)?;
        let k = self.section(kwargs)?;
        (p.len() + k.len() < payload.len() + kwargs.len()).then_some((p, k))
    }

    fn section(&mut self, data: &[u8]) -> Option<Bytes> {
        if data.is_empty() {
            return Some(Bytes::new());
        }
        let len = u32::try_from(data.len()).ok()?;
        let packed = self.run(data)?;
        let mut out = BytesMut::with_capacity(SECTION_PREFIX + packed.len());
        out.put_u8(self.algorithm.0);
        out.put_u32(len);
        out.extend_from_slice(&packed);
        Some(out.freeze())
    }

    #[cfg(feature = "zstd")]
    fn run(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if self.algorithm != CompressionId::ZSTD {
            return None;
        }
        if self.zstd.is_none() {
            // One context per connection, reused: creating one costs more than compressing
            // a small frame.
            self.zstd = Some(zstd::bulk::Compressor::new(self.level).ok()?);
        }
        self.zstd.as_mut()?.compress(data).ok()
    }

    #[cfg(not(feature = "zstd"))]
    fn run(&mut self, _data: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// The receive half of compression in force: inflates COMPRESSED frames, guarded by the
/// receiver's frame limit.
pub(crate) struct Inflater {
    algorithms: Vec<CompressionId>,
    #[cfg(feature = "zstd")]
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// One compressed section, split into its prefix fields and data.
struct Packed {
    algorithm: CompressionId,
    len: u32,
    data: Bytes,
}

fn split_section(what: &'static str, mut b: Bytes) -> Result<Option<Packed>, ProtocolError> {
    if b.is_empty() {
        return Ok(None);
    }
    if b.len() < SECTION_PREFIX {
        return Err(ProtocolError::BadCompressedData {
            section: what,
            problem: "shorter than its 5-byte prefix (algorithm id, decompressed length)"
                .to_string(),
        });
    }
    let head = b.split_to(SECTION_PREFIX);
    Ok(Some(Packed {
        algorithm: CompressionId(head[0]),
        len: u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
        data: b,
    }))
}

impl Inflater {
    /// Inflates frames compressed with any of `algorithms` (the ones in force).
    pub(crate) fn new(algorithms: Vec<CompressionId>) -> Inflater {
        Inflater {
            algorithms,
            #[cfg(feature = "zstd")]
            zstd: None,
        }
    }

    /// Inflates the payload and kwargs of a COMPRESSED frame of `frame_len` bytes (as
    /// received), after checking that the decompressed frame fits `max_frame_len`: the
    /// declared sizes are checked before any byte is decompressed or any buffer allocated,
    /// and decompression stops at the declared size, so a frame cannot inflate past it.
    pub(crate) fn inflate(
        &mut self,
        frame_len: u64,
        max_frame_len: u32,
        payload: Bytes,
        kwargs: Bytes,
    ) -> Result<(Bytes, Bytes), ProtocolError> {
        let wire = (payload.len() + kwargs.len()) as u64;
        let p = split_section("payload", payload)?;
        let k = split_section("kwargs", kwargs)?;
        let declared = |s: &Option<Packed>| s.as_ref().map_or(0, |s| u64::from(s.len));
        let len = frame_len - wire + declared(&p) + declared(&k);
        if len > u64::from(max_frame_len) {
            return Err(ProtocolError::DecompressedTooLarge {
                len,
                max: u64::from(max_frame_len),
            });
        }
        debug_assert!(len >= HEADER_LEN as u64);
        Ok((
            self.section("payload", p, max_frame_len)?,
            self.section("kwargs", k, max_frame_len)?,
        ))
    }

    fn section(
        &mut self,
        what: &'static str,
        s: Option<Packed>,
        max: u32,
    ) -> Result<Bytes, ProtocolError> {
        let Some(s) = s else {
            return Ok(Bytes::new());
        };
        if !self.algorithms.contains(&s.algorithm) {
            return Err(ProtocolError::BadCompressedData {
                section: what,
                problem: format!(
                    "compressed with algorithm {}, which is not in force on this connection (in force: {})",
                    s.algorithm,
                    self.algorithms
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        self.run(what, &s, max)
    }

    #[cfg(feature = "zstd")]
    fn run(&mut self, what: &'static str, s: &Packed, max: u32) -> Result<Bytes, ProtocolError> {
        if s.algorithm != CompressionId::ZSTD {
            return Err(ProtocolError::BadCompressedData {
                section: what,
                problem: format!("algorithm {} is unknown to this version", s.algorithm),
            });
        }
        let want = s.len as usize;
        if self.zstd.is_none() {
            let d =
                zstd::bulk::Decompressor::new().map_err(|e| ProtocolError::BadCompressedData {
                    section: what,
                    problem: format!("cannot start the zstd decoder: {e}"),
                })?;
            self.zstd = Some(d);
        }
        let Some(d) = self.zstd.as_mut() else {
            return Ok(Bytes::new());
        };
        // The output buffer holds exactly the declared size (checked against the frame
        // limit): the decoder fails rather than write past it.
        match d.decompress(&s.data, want) {
            Ok(v) if v.len() == want => Ok(Bytes::from(v)),
            Ok(v) => Err(ProtocolError::BadCompressedData {
                section: what,
                problem: format!(
                    "inflates to {} bytes, not the {want} its prefix declares",
                    v.len()
                ),
            }),
            Err(e) => Err(classify(what, &s.data, want, max, e)),
        }
    }

    #[cfg(not(feature = "zstd"))]
    fn run(&mut self, what: &'static str, s: &Packed, _max: u32) -> Result<Bytes, ProtocolError> {
        Err(ProtocolError::BadCompressedData {
            section: what,
            problem: format!(
                "{} bytes in algorithm {}, but this build has no zstd (feature `zstd` of wirecall-protocol)",
                s.data.len(),
                s.algorithm
            ),
        })
    }
}

/// Tells why a bounded decompression failed: the data inflates past its declared size (a
/// zip bomb, or a lying prefix), or it is not valid zstd. Runs a streaming decoder that
/// stops one byte past the declared size, so it never holds more than that.
#[cfg(feature = "zstd")]
fn classify(
    what: &'static str,
    data: &[u8],
    want: usize,
    max: u32,
    e: std::io::Error,
) -> ProtocolError {
    use std::io::Read;
    let inflates_past = ProtocolError::InflatesPastDeclared {
        section: what,
        declared: want as u64,
    };
    // The first zstd frame's header may say its size outright.
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(data) {
        if n > want as u64 {
            return inflates_past;
        }
    }
    let past = zstd::stream::read::Decoder::new(data)
        .ok()
        .and_then(|mut d| {
            // Its window is bounded by the frame limit, as the output is (a zstd frame may ask
            // for a window of 128 MiB).
            let log = (u32::BITS - max.max(1024).leading_zeros()).clamp(10, 31);
            d.window_log_max(log).ok()?;
            let mut sink = std::io::sink();
            std::io::copy(&mut d.take(want as u64 + 1), &mut sink).ok()
        });
    match past {
        Some(n) if n > want as u64 => inflates_past,
        _ => ProtocolError::BadCompressedData {
            section: what,
            problem: format!("not valid zstd data: {e}"),
        },
    }
}
