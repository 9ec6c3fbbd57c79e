//! `wirecall pick`'s report, by concern: the decision from the measurements
//! ([`decision`]: totals, constraints, ranking, recommendation, configuration lines), the
//! terminal text ([`table`]), the `--json` document ([`json`], serialized from structs) and
//! how figures are written ([`units`]).

mod decision;
mod json;
mod table;
mod units;

pub(crate) use decision::{build, Criteria, Need, Prefer, Report};
pub(crate) use json::to_json;
pub(crate) use table::{per_sample_table, table};
pub(crate) use units::{fmt_ns, group};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pick::measure::{self, CodecStage};
    use crate::pick::rpc::RpcCell;
    use crate::pick::rpc::RpcResults;
    use crate::pick::samples::{Sample, Source};
    use std::time::Duration;
    use wirecall_bench_harness::rpc::TransportKind;
    use wirecall_bench_harness::rpc::{CodecRpc, Latency, Throughput};
    use wirecall_codecs::{CodecId, CodecInfo, Value};

    fn figures(codec: CodecId, p50_us: u64) -> CodecRpc {
        CodecRpc {
            codec,
            frame_len: 90,
            latency: Latency {
                p50: Duration::from_micros(p50_us),
                p99: Duration::from_micros(p50_us * 2),
                samples: 100,
            },
            throughput: Throughput {
                calls_per_sec: 100_000.0,
                calls: 1000,
                inflight: 64,
                connections: 1,
            },
        }
    }

    /// Reports one user sample through json and msgpack with the given RPC cells.
    fn report_with(
        json_tcp: Result<CodecRpc, String>,
        msgpack_tcp: Result<CodecRpc, String>,
    ) -> (Report, Vec<Sample>) {
        let samples = vec![Sample {
            name: "s".into(),
            description: String::new(),
            source: Source::BuiltIn,
            value: Value::List(vec![Value::Int(1), Value::Str("a".into())]),
            typed: None,
        }];
        let codecs: Vec<CodecInfo> = [CodecId::JSON, CodecId::MSGPACK]
            .into_iter()
            .filter_map(wirecall_bench_harness::measure::info)
            .collect();
        let results = measure::run(
            &codecs,
            &samples,
            &[&CodecStage],
            Duration::from_millis(4),
            |_, _, _| {},
        );
        let unix = |c| RpcCell {
            transport: TransportKind::Unix,
            result: Ok(figures(c, 5)),
        };
        let rpc = RpcResults {
            per_measurement: Duration::from_millis(50),
            elapsed: Duration::from_secs(1),
            cells: vec![
                vec![
                    RpcCell {
                        transport: TransportKind::Tcp,
                        result: json_tcp,
                    },
                    unix(CodecId::JSON),
                ],
                vec![
                    RpcCell {
                        transport: TransportKind::Tcp,
                        result: msgpack_tcp,
                    },
                    unix(CodecId::MSGPACK),
                ],
            ],
            baselines: Vec::new(),
        };
        let criteria = Criteria {
            needs: Vec::new(),
            max_size: None,
            prefer: Prefer::Latency,
            link_mbps: 1000.0,
            allow_unmaintained: true,
        };
        (
            build(&codecs, &samples, &results, Some(&rpc), &criteria),
            samples,
        )
    }

    #[test]
    fn a_failed_rpc_shows_in_its_row_and_excludes_the_codec() {
        let (rep, samples) = report_with(
            Err("json over tcp://127.0.0.1:1: connection refused".into()),
            Ok(figures(CodecId::MSGPACK, 20)),
        );
        let json = rep
            .rows
            .iter()
            .find(|r| r.info.id == CodecId::JSON)
            .unwrap();
        assert!(json
            .excluded
            .as_deref()
            .unwrap()
            .contains("connection refused"));
        assert!(!json.recommended);
        let text = table(&rep, &samples, "test");
        let line = text.lines().find(|l| l.contains(" json ")).unwrap();
        assert!(line.contains("failed"), "{line}");
        assert!(line.contains("RPC over tcp failed: json over"), "{line}");
        assert!(
            text.contains("echo call of a 32-byte string")
                && text.contains("64 in flight on one connection, 50 ms per figure"),
            "{text}"
        );
        let msgpack = text.lines().find(|l| l.contains(" msgpack ")).unwrap();
        assert!(
            msgpack.contains("20.0/40.0") && msgpack.contains("100,000"),
            "{msgpack}"
        );
        let doc = to_json(&rep, &samples, &[], 1.0, 1.0).unwrap();
        let row = doc["codecs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "json")
            .unwrap();
        assert!(row["rpc"]["tcp"]["p50_ns"].is_null());
        assert!(row["rpc"]["tcp"]["error"]
            .as_str()
            .unwrap()
            .contains("refused"));
        assert_eq!(row["rpc"]["unix"]["p50_ns"], 5000);
    }

    #[test]
    fn latency_preference_counts_the_measured_round_trip() {
        // msgpack encodes the sample faster than json, but a slower measured round trip
        // (per sample) outweighs that: json wins.
        let (rep, _) = report_with(
            Ok(figures(CodecId::JSON, 10)),
            Ok(figures(CodecId::MSGPACK, 500)),
        );
        let json = rep
            .rows
            .iter()
            .find(|r| r.info.id == CodecId::JSON)
            .unwrap();
        let msgpack = rep
            .rows
            .iter()
            .find(|r| r.info.id == CodecId::MSGPACK)
            .unwrap();
        assert!(json.recommended, "{:?}", rep.why);
        assert!(msgpack.score.unwrap() >= 500_000.0);
        assert!(rep.why.contains("RPC round trip"), "{}", rep.why);
        let (rep, _) = report_with(
            Ok(figures(CodecId::JSON, 500)),
            Ok(figures(CodecId::MSGPACK, 10)),
        );
        assert!(rep
            .rows
            .iter()
            .any(|r| r.recommended && r.info.id == CodecId::MSGPACK));
    }
}
