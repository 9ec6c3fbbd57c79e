#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60) on the stable
# toolchain, and fails (non-zero) if any target finds a crash, a timeout or an OOM.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz builds with sanitizer flags that are unstable options; RUSTC_BOOTSTRAP=1 lets
# the stable compiler accept them (no nightly toolchain needed). cargo-fuzz is installed
# when missing. Seeds are generated from the conformance vectors into fuzz/seeds/; what the
# fuzzer finds goes to fuzz/corpus/<target>/ and crashes to fuzz/artifacts/<target>/ (all
# three are ignored by git). Runs at nice 10 so other work on the machine keeps priority.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

secs="${1:-60}"
shift || true
case "$secs" in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets (release, debug assertions, AddressSanitizer)"
start=$(date +%s)
cargo fuzz build
echo "   built in $(($(date +%s) - start)) s"

if command -v python3 >/dev/null 2>&1; then
    echo "== seeds from the conformance vectors"
    rm -rf seeds
    python3 seed_corpus.py seeds
else
    echo "== python3 not found: no seeds, the fuzzer starts from empty corpora"
fi

host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="target/$host/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
failed=()
report=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
    log="artifacts/$t/last-run.log"
    echo "== $t: ${secs} s"
    rc=0
    nice -n 10 "$bin_dir/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
        -timeout=10 -print_final_stats=1 "corpus/$t" "seeds/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    execs="${execs:-0}"
    took="${took:-$secs}"
    rate=$((execs / (took > 0 ? took : 1)))
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        report+=("$(printf '%-18s %12s %6s s %9s/s  FAILED (exit %s)' "$t" "$execs" "$took" "$rate" "$rc")")
        echo "!! $t failed (exit $rc); the end of its log ($log):"
        tail -40 "$log"
        art=$(ls -t "artifacts/$t"/crash-* "artifacts/$t"/timeout-* "artifacts/$t"/oom-* 2>/dev/null | head -1 || true)
        if [ -n "$art" ]; then
            echo "!! reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $art)"
        fi
    else
        report+=("$(printf '%-18s %12s %6s s %9s/s  ok' "$t" "$execs" "$took" "$rate")")
    fi
done

echo
echo "== executions per target"
printf '%-18s %12s %8s %11s  %s\n' target executions time "exec/s" result
printf '%s\n' "${report[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
