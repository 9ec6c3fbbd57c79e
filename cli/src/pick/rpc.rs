//! The RPC stage of `wirecall pick`: a real echo call (a 32-byte string) through the engine
//! over loopback tcp and a unix socket, for every codec: p50/p99 latency with one call in
//! flight and calls/s with 64 in flight on one connection, beside the raw socket ping-pong
//! of the same frame length (the physical limit of a round trip).
//!
//! Unlike the per-sample stages of [`super::measure`], this stage runs once per codec, not
//! once per (codec, sample) pair: the call is the same for every sample, and measuring all
//! codecs interleaved (as [`wirecall_bench_harness::rpc::measure_rpc`] does) gives them the same
//! background load, so their figures compare.

use std::time::Duration;

use wirecall_bench_harness::rpc::{self, CodecRpc, Latency, RpcOptions, TransportKind};
use wirecall_codecs::CodecId;

/// Time per RPC figure by default.
pub(super) const PER_MEASUREMENT: Duration = Duration::from_millis(200);
/// Time per RPC figure with `--quick`.
pub(super) const QUICK_PER_MEASUREMENT: Duration = Duration::from_millis(50);

/// One codec's RPC figures over one transport, or why the call failed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RpcCell {
    /// The transport.
    pub transport: TransportKind,
    /// The figures, or the error that stopped the measurement (one sentence).
    pub result: Result<CodecRpc, String>,
}

/// The raw socket ping-pong baseline of one transport.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Baseline {
    /// The transport.
    pub transport: TransportKind,
    /// Round-trip latency of the raw ping-pong.
    pub raw: Latency,
    /// Bytes sent each way per round trip.
    pub raw_len: usize,
}

/// What the RPC stage measured.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RpcResults {
    /// Time per figure.
    pub per_measurement: Duration,
    /// Wall time the whole stage took.
    pub elapsed: Duration,
    /// `cells[codec]`, in the order of the codecs given to [`measure`]: one entry per
    /// transport (tcp, then unix).
    pub cells: Vec<Vec<RpcCell>>,
    /// The raw ping-pong baseline of each transport that measured one.
    pub baselines: Vec<Baseline>,
}

impl RpcResults {
    /// The cells of `codec`, empty when it was not measured.
    pub(super) fn of(&self, codecs: &[CodecId], codec: CodecId) -> &[RpcCell] {
        codecs
            .iter()
            .position(|&c| c == codec)
            .and_then(|i| self.cells.get(i))
            .map_or(&[], Vec::as_slice)
    }
}

/// Calls in flight and connections of the calls/s figure (the `measure_rpc` defaults).
pub(super) fn load() -> (usize, usize) {
    let o = RpcOptions::new(TransportKind::Tcp, Vec::new());
    (o.inflight, o.connections)
}

/// About how long [`measure`] takes for one transport with `codecs` codecs: each figure
/// (raw baseline, and per codec one latency and one throughput) takes `per` plus a warm-up.
pub(super) fn estimate(codecs: usize, per: Duration) -> Duration {
    (per + rpc::warm_up_time(per)) * (2 * codecs as u32 + 1)
}

/// Runs `measure_rpc` for one transport, turning a panic into an error.
fn guarded(opts: &RpcOptions) -> Result<rpc::RpcReport, String> {
    std::panic::catch_unwind(|| rpc::measure_rpc(opts)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(format!("the RPC measurement panicked: {msg}"))
    })
}

/// Measures every codec over tcp, then unix, `per` per figure; `tick` is called after each
/// transport. When a transport's measurement of all codecs together fails, each codec is
/// measured alone so the error lands in the row of the codec that caused it and the others
/// still get figures.
pub(super) fn measure(
    codecs: &[CodecId],
    per: Duration,
    mut tick: impl FnMut(TransportKind),
) -> RpcResults {
    let started = std::time::Instant::now();
    let mut cells: Vec<Vec<RpcCell>> = vec![Vec::new(); codecs.len()];
    let mut baselines = Vec::new();
    for t in TransportKind::ALL {
        let opts = |codecs: Vec<CodecId>| RpcOptions::new(t, codecs).duration(per);
        match guarded(&opts(codecs.to_vec())) {
            Ok(report) => {
                baselines.push(Baseline {
                    transport: t,
                    raw: report.raw,
                    raw_len: report.raw_len,
                });
                for (codec, out) in codecs.iter().zip(&mut cells) {
                    let result = report
                        .rows
                        .iter()
                        .find(|r| r.codec == *codec)
                        .cloned()
                        .ok_or_else(|| format!("{codec} over {t}: no figures were returned"));
                    out.push(RpcCell {
                        transport: t,
                        result,
                    });
                }
            }
            Err(_) => {
                for (codec, out) in codecs.iter().zip(&mut cells) {
                    let result =
                        guarded(&opts(vec![*codec])).and_then(|report| {
                            if !baselines.iter().any(|b: &Baseline| b.transport == t) {
                                baselines.push(Baseline {
                                    transport: t,
                                    raw: report.raw,
                                    raw_len: report.raw_len,
                                });
                            }
                            report.rows.into_iter().next().ok_or_else(|| {
                                format!("{codec} over {t}: no figures were returned")
                            })
                        });
                    out.push(RpcCell {
                        transport: t,
                        result,
                    });
                }
            }
        }
        tick(t);
    }
    RpcResults {
        per_measurement: per,
        elapsed: started.elapsed(),
        cells,
        baselines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_gets_figures_on_both_transports() {
        let codecs = [CodecId::JSON, CodecId::POSTCARD];
        let mut ticks = Vec::new();
        let r = measure(&codecs, Duration::from_millis(20), |t| ticks.push(t));
        assert_eq!(ticks, TransportKind::ALL);
        assert_eq!(r.cells.len(), 2);
        assert_eq!(r.baselines.len(), 2);
        for (codec, cells) in codecs.iter().zip(&r.cells) {
            assert_eq!(cells.len(), 2);
            for (cell, t) in cells.iter().zip(TransportKind::ALL) {
                assert_eq!(cell.transport, t);
                let row = cell.result.as_ref().unwrap();
                assert_eq!(row.codec, *codec);
                assert!(row.latency.p50 > Duration::ZERO, "{row:?}");
                assert!(row.latency.p50 <= row.latency.p99, "{row:?}");
                assert!(row.throughput.calls_per_sec > 0.0, "{row:?}");
            }
        }
        assert_eq!(r.of(&codecs, CodecId::POSTCARD), r.cells[1].as_slice());
        assert!(r.of(&codecs, CodecId::CBOR).is_empty());
    }
}
