//! Shared helpers for wirecall benchmarks (payloads, baselines).

pub mod measure;
pub mod rpc;
