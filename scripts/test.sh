#!/usr/bin/env bash
# The full wirecall test suite, exactly as CI runs it: installs the Python reference packages
# when missing (scripts/python-env.sh), then runs every test, example and doc test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WIRECALL_PYTHON="$(bash scripts/python-env.sh)"
export WIRECALL_PYTHON
# Interop tests fail instead of skipping when the reference packages are missing.
export WIRECALL_REQUIRE_PYTHON=1
# A one-shot build: incremental caches would only add gigabytes to the target dir.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --all-targets
cargo test --workspace --doc
CARGO_TARGET_DIR=target/loom CARGO_PROFILE_RELEASE_DEBUG=0 RUSTFLAGS="--cfg wirecall_loom" cargo test -p wirecall --lib --release client::slot
