//! wirecall's benchmarks: the criterion benches, the end-to-end `perf` binary and the peer
//! baselines they measure beside wirecall (tarpc, [`tarpc_peer`]).
//!
//! The measurement helpers themselves live in `wirecall-bench-harness` (re-exported here as
//! [`measure`], [`payloads`], [`raw`] and [`rpc`]), which the `wirecall` command line uses
//! without pulling in the peers.

pub use wirecall_bench_harness::{measure, payloads, raw, rpc};

pub mod tarpc_peer;
pub mod tls;
