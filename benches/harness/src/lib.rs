//! Measurement shared by the `wirecall` command line (`pick`, `bench`), the `perf` binary
//! and the criterion benches: a time-budgeted codec timer ([`measure`]), representative
//! payloads ([`payloads`]), end-to-end echo calls through the engine ([`rpc`]) and the raw
//! socket baselines they are compared with ([`raw`]).
//!
//! Peer RPC crates measured as baselines (tarpc) are not here but in `wirecall-benches`, so
//! that the command line does not build them.

pub mod measure;
pub mod payloads;
pub mod raw;
pub mod rpc;
