//! Shared helpers for wirecall benchmarks (payloads, baselines).
