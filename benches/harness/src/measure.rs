//! Codec measurement shared by `wirecall pick`, `wirecall bench codecs` and the benches:
//! a time-budgeted timer with robust statistics, and the typed and dynamic ([`Value`])
//! encode/decode measurements of one value with one codec.
//!
//! Every measurement runs the operation in batches until its time budget is spent, and
//! reports the median and the 10th/90th percentiles of the per-operation time over the
//! batches, so one slow batch (a page fault, another process) moves the spread, not the
//! median.
//!
//! ```
//! use std::time::Duration;
//! use wirecall_bench_harness::measure::{self, Budget};
//! use wirecall_codecs::CodecId;
//!
//! let budget = Budget::new(Duration::from_millis(5));
//! let m = measure::typed(CodecId::MSGPACK, &(1u32, "two".to_owned()), budget).unwrap();
//! assert_eq!(m.bytes, [0x92, 0x01, 0xa3, b't', b'w', b'o']);
//! assert!(m.encode.median_ns > 0.0);
//! assert!(m.decoded.is_ok());
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use wirecall_codecs::{CodecError, CodecId, CodecInfo, Limits, Value};

/// How long one measurement (one operation, one codec, one value) may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Target wall time for the timed batches of one measurement. A measurement always
    /// takes at least [`Budget::MIN_SAMPLES`] batches of one operation, so an operation
    /// slower than `time / MIN_SAMPLES` overruns the budget.
    pub time: Duration,
}

impl Budget {
    /// Fewest batches a measurement takes, whatever the budget.
    pub const MIN_SAMPLES: usize = 5;
    /// How many batches a measurement aims for at least within its budget.
    pub const TARGET_SAMPLES: u32 = 31;
    /// Longest batch: shorter than a scheduler time slice, so on a busy machine a
    /// preemption spoils a few batches (which the median ignores) rather than most.
    pub const MAX_BATCH: Duration = Duration::from_micros(500);

    /// A budget of `time` per measurement.
    pub fn new(time: Duration) -> Budget {
        Budget { time }
    }
}

/// The time one operation took, over the batches of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Median per-operation time in nanoseconds.
    pub median_ns: f64,
    /// 10th percentile of the per-operation time (fast end of the spread).
    pub p10_ns: f64,
    /// 90th percentile of the per-operation time (slow end of the spread).
    pub p90_ns: f64,
    /// Number of timed batches.
    pub samples: usize,
    /// Operations per batch.
    pub batch: u64,
}

impl Timing {
    /// Total number of timed operations.
    pub fn operations(&self) -> u64 {
        self.batch * self.samples as u64
    }

    /// Adds two timings of consecutive operations (e.g. encode + decode, or one per
    /// sample): medians and percentiles add, which is exact for the median only when the
    /// two are independent and is the usual summary for a pipeline.
    pub fn plus(&self, other: &Timing) -> Timing {
        Timing {
            median_ns: self.median_ns + other.median_ns,
            p10_ns: self.p10_ns + other.p10_ns,
            p90_ns: self.p90_ns + other.p90_ns,
            samples: self.samples.min(other.samples),
            batch: self.batch.min(other.batch),
        }
    }
}

/// Value at quantile `q` (0..=1) of sorted data, linearly interpolated.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            let frac = pos - lo as f64;
            sorted[lo] * (1.0 - frac) + sorted[hi] * frac
        }
    }
}

/// Times `op` within `budget`: one warm-up call sizes the batches (see [`Budget`]), then
/// batches run until the budget is spent (at least [`Budget::MIN_SAMPLES`] of them, at
/// most three budgets in all).
pub fn time<R>(budget: Budget, mut op: impl FnMut() -> R) -> Timing {
    let batch = calibrate(budget, &mut op);
    let hard_stop = budget.time * 3;
    let mut per_op = Vec::with_capacity(Budget::TARGET_SAMPLES as usize + 8);
    let began = Instant::now();
    loop {
        per_op.push(run_batch(batch, &mut op));
        let spent = began.elapsed();
        let enough = per_op.len() >= Budget::MIN_SAMPLES;
        if (enough && spent >= budget.time) || (spent >= hard_stop && per_op.len() >= 2) {
            break;
        }
    }
    stats(per_op, batch)
}

/// Times two operations against each other: their batches alternate (a, b, a, b, ...) for
/// twice `budget`, so a drift of the machine's speed (frequency scaling, another process)
/// affects both alike and their ratio stays fair. Used for wirecall-vs-baseline ratios.
pub fn time_pair<R1, R2>(
    budget: Budget,
    mut a: impl FnMut() -> R1,
    mut b: impl FnMut() -> R2,
) -> (Timing, Timing) {
    let batch_a = calibrate(budget, &mut a);
    let batch_b = calibrate(budget, &mut b);
    let total = budget.time * 2;
    let hard_stop = budget.time * 6;
    let mut ta = Vec::with_capacity(Budget::TARGET_SAMPLES as usize + 8);
    let mut tb = Vec::with_capacity(Budget::TARGET_SAMPLES as usize + 8);
    let began = Instant::now();
    loop {
        ta.push(run_batch(batch_a, &mut a));
        tb.push(run_batch(batch_b, &mut b));
        let spent = began.elapsed();
        let enough = ta.len() >= Budget::MIN_SAMPLES;
        if (enough && spent >= total) || (spent >= hard_stop && ta.len() >= 2) {
            break;
        }
    }
    (stats(ta, batch_a), stats(tb, batch_b))
}

/// One warm-up call sizes the batches so at least [`Budget::TARGET_SAMPLES`] of them fit
/// the budget, each at most [`Budget::MAX_BATCH`] long (one operation when a single one
/// takes longer).
fn calibrate<R>(budget: Budget, op: &mut impl FnMut() -> R) -> u64 {
    let start = Instant::now();
    black_box(op());
    let first = start.elapsed().max(Duration::from_nanos(1));
    let per_sample = (budget.time / Budget::TARGET_SAMPLES).min(Budget::MAX_BATCH);
    (per_sample.as_nanos() / first.as_nanos()).clamp(1, 1 << 24) as u64
}

/// Runs `batch` operations; returns the time per operation in nanoseconds.
fn run_batch<R>(batch: u64, op: &mut impl FnMut() -> R) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        black_box(op());
    }
    t.elapsed().as_nanos() as f64 / batch as f64
}

fn stats(mut per_op: Vec<f64>, batch: u64) -> Timing {
    per_op.sort_by(f64::total_cmp);
    Timing {
        median_ns: quantile(&per_op, 0.5),
        p10_ns: quantile(&per_op, 0.1),
        p90_ns: quantile(&per_op, 0.9),
        samples: per_op.len(),
        batch,
    }
}

/// Every built-in codec compiled in, in id order, with what it is.
pub fn codecs() -> Vec<CodecInfo> {
    wirecall_codecs::builtin_infos().collect()
}

/// What codec `id` is, if it is a built-in codec compiled in.
pub fn info(id: CodecId) -> Option<CodecInfo> {
    wirecall_codecs::builtin_info(id)
}

/// Typed encode with a built-in codec (the path a Rust service pays).
pub fn encode_typed<T: Serialize + ?Sized>(
    id: CodecId,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    wirecall_codecs::encode_into(id, value, out)
}

/// Typed decode with a built-in codec and default limits.
pub fn decode_typed<T: DeserializeOwned>(id: CodecId, bytes: &[u8]) -> Result<T, CodecError> {
    wirecall_codecs::decode(id, bytes, &Limits::DEFAULT)
}

/// Dynamic encode of a [`Value`] with a built-in codec.
pub fn encode_value(id: CodecId, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    wirecall_codecs::encode_value(id, value, out)
}

/// Dynamic decode into a [`Value`] with a built-in codec and default limits.
pub fn decode_value(id: CodecId, bytes: &[u8]) -> Result<Value, CodecError> {
    wirecall_codecs::decode_value(id, bytes, &Limits::DEFAULT)
}

/// One value measured with one codec: its encoding, the encode time and the decode
/// outcome.
#[derive(Debug)]
pub struct Measurement<T> {
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Time to encode (into a reused buffer).
    pub encode: Timing,
    /// The decoded value and the time to decode, or why decoding failed (then it was not
    /// timed).
    pub decoded: Result<(T, Timing), CodecError>,
}

/// Measures `value` with codec `id` through the typed path: encode into a reused buffer,
/// decode back into `T`. Fails only when encoding fails; a decode failure is reported in
/// [`Measurement::decoded`].
pub fn typed<T: Serialize + DeserializeOwned>(
    id: CodecId,
    value: &T,
    budget: Budget,
) -> Result<Measurement<T>, CodecError> {
    run(
        budget,
        |out| encode_typed(id, value, out),
        |bytes| decode_typed::<T>(id, bytes),
    )
}

/// Measures `value` with codec `id` through the dynamic path (`encode_value` /
/// `decode_value`). A codec that is not self-describing encodes but reports its decode
/// error in [`Measurement::decoded`].
pub fn value(id: CodecId, value: &Value, budget: Budget) -> Result<Measurement<Value>, CodecError> {
    run(
        budget,
        |out| encode_value(id, value, out),
        |bytes| decode_value(id, bytes),
    )
}

/// The shared measurement: check once, then time encode and (if it works) decode.
pub fn run<T>(
    budget: Budget,
    mut encode: impl FnMut(&mut Vec<u8>) -> Result<(), CodecError>,
    mut decode: impl FnMut(&[u8]) -> Result<T, CodecError>,
) -> Result<Measurement<T>, CodecError> {
    let mut bytes = Vec::new();
    encode(&mut bytes)?;
    let mut buf = Vec::with_capacity(bytes.len());
    let encode_timing = time(budget, || {
        buf.clear();
        // Encoding succeeded once with the same input, so later errors cannot happen; the
        // result is kept opaque either way.
        black_box(encode(&mut buf).is_ok())
    });
    let decoded = match decode(&bytes) {
        Ok(v) => {
            let t = time(budget, || black_box(decode(&bytes).is_ok()));
            Ok((v, t))
        }
        Err(e) => Err(e),
    };
    Ok(Measurement {
        bytes,
        encode: encode_timing,
        decoded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let d = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&d, 0.5), 3.0);
        assert_eq!(quantile(&d, 0.0), 1.0);
        assert_eq!(quantile(&d, 1.0), 5.0);
        assert!((quantile(&d, 0.1) - 1.4).abs() < 1e-9);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn timer_respects_minimum_samples_and_orders_percentiles() {
        let t = time(Budget::new(Duration::from_millis(2)), || {
            std::thread::sleep(Duration::from_micros(50))
        });
        assert!(t.samples >= Budget::MIN_SAMPLES);
        assert!(t.p10_ns <= t.median_ns && t.median_ns <= t.p90_ns);
        assert!(t.median_ns >= 50_000.0);
    }

    #[test]
    fn paired_timing_alternates_and_orders_the_two() {
        let (fast, slow) = time_pair(
            Budget::new(Duration::from_millis(2)),
            || std::hint::black_box(1u64 + 1),
            || std::thread::sleep(Duration::from_micros(100)),
        );
        assert!(fast.samples >= Budget::MIN_SAMPLES);
        assert_eq!(fast.samples, slow.samples);
        assert!(slow.median_ns >= 100_000.0);
        assert!(fast.median_ns < slow.median_ns / 10.0);
    }

    #[test]
    fn typed_round_trip_and_non_self_describing_value_path() {
        let b = Budget::new(Duration::from_millis(1));
        let m = typed(CodecId::POSTCARD, &vec![1u16, 300], b).unwrap();
        assert_eq!(m.bytes, [2, 1, 0xac, 0x02]);
        assert_eq!(m.decoded.unwrap().0, vec![1u16, 300]);
        let v = value(CodecId::POSTCARD, &Value::Int(1), b).unwrap();
        assert!(v.decoded.is_err());
        let j = value(CodecId::JSON, &Value::Str("x".into()), b).unwrap();
        assert_eq!(j.bytes, b"\"x\"");
        assert_eq!(j.decoded.unwrap().0, Value::Str("x".into()));
    }
}
