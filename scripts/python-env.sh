#!/usr/bin/env bash
# Makes sure the Python reference implementations that the interop tests compare against are
# installed, in a virtual environment inside the cargo target dir (nothing global is touched).
# Prints the interpreter's path on stdout. Pinned to the versions the shared vectors were
# recorded with.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/pyref"
reqs="serpent==1.43 Pyro5==5.17 msgpack==1.2.4 cbor2==6.2.1"
py="$venv/bin/python"
check='import serpent, Pyro5, msgpack, cbor2; assert serpent.__version__ == "1.43"'
if [ ! -x "$py" ] || ! "$py" -c "$check" >/dev/null 2>&1; then
    echo "python-env: installing $reqs into $venv" >&2
    python3 -m venv "$venv" >&2
    "$py" -m pip install --quiet --disable-pip-version-check $reqs >&2
    "$py" -c "$check"
fi
echo "$py"
