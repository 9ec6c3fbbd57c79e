//! wirecall conformance: the vector notation, golden vectors, runners over public suites and
//! Python interop.
//!
//! * [`notation`]: `parse` / `print` for the JSON-based vector notation (see `NOTATION.md`).
//! * [`suites`]: one `run_<suite>(vectors_dir) -> SuiteReport` per public suite, shared by the
//!   cargo tests and the `wirecall conformance` command.
//! * [`golden`]: wirecall's own golden vectors (`vectors/codecs/<codec>.json`).
//! * [`interop`]: the seeded value generator and the Python cross-check driver.
//! * [`codec`]: encode/decode by codec id, the entry points the runners use.

pub mod codec;
pub mod golden;
pub mod interop;
pub mod json;
pub mod notation;
mod report;
pub mod suites;

pub use report::{Deviations, SuiteReport};

use std::path::PathBuf;

/// The public vector suites: `$WIRECALL_VECTORS` if set, else `../shared/vectors` next to the
/// repository root.
pub fn default_vectors_dir() -> PathBuf {
    match std::env::var_os("WIRECALL_VECTORS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    }
}

/// This crate's own vector folder (`conformance/vectors`).
pub fn own_vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}
