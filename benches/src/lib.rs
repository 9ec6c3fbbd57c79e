//! Shared helpers for wirecall benchmarks (payloads, baselines).

pub mod measure;
pub mod payloads;
pub mod rpc;
