#!/usr/bin/env bash
# The full wirecall test suite, exactly as CI runs it: installs the Python reference packages
# (scripts/python-env.sh) and the system packages etcd and protoc (scripts/system-deps.sh)
# when missing, then runs every test, example and doc test, with the `etcd` feature on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WIRECALL_PYTHON="$(bash scripts/python-env.sh)"
export WIRECALL_PYTHON
# Interop tests fail instead of skipping when the reference packages are missing.
export WIRECALL_REQUIRE_PYTHON=1
# etcd (the etcd naming backend's tests start their own members) and protoc (its client's
# build), installed from Debian packages when missing; those tests fail instead of skipping.
bash scripts/system-deps.sh
export WIRECALL_REQUIRE_ETCD=1
# A one-shot build: incremental caches would only add gigabytes to the target dir.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --all-targets --features wirecall/etcd,wirecall-cli/etcd
cargo test --workspace --doc --features wirecall/etcd,wirecall-cli/etcd
CARGO_TARGET_DIR=target/loom CARGO_PROFILE_RELEASE_DEBUG=0 RUSTFLAGS="--cfg wirecall_loom" cargo test -p wirecall --lib --release client::slot
