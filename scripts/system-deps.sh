#!/usr/bin/env bash
# System packages the test command needs beyond Rust and Python: `etcd` (the etcd naming
# backend's tests start their own etcd processes on loopback ports) and `protoc` with its
# well-known types (the etcd client crate compiles its protobufs at build time; only with
# the `etcd` cargo feature). Installs Debian's etcd-server, protobuf-compiler and
# libprotobuf-dev when any is missing (as root, or
# through sudo), and makes sure the package's own etcd service is not left running on the
# default ports. Exits non-zero with a message when it cannot install them.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto...), which etcd's protos import;
# a recommendation of protobuf-compiler, not a dependency.
[ -e /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "system-deps: missing ${missing[*]} (needed by the etcd naming backend and its tests)," >&2
    echo "system-deps: and this script is not root and sudo is not available." >&2
    echo "system-deps: install them yourself (e.g. 'apt-get install etcd-server protobuf-compiler' as root)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${missing[*]} and apt-get is not available: install etcd and protoc" >&2
    echo "system-deps: with your system's package manager, then run the tests again" >&2
    exit 1
fi

echo "system-deps: installing ${missing[*]}" >&2
# Do not let the package start its service (Debian's etcd-server enables one on 2379):
# policy-rc.d answering 101 tells invoke-rc.d not to start anything while we install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        "${as_root[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"

# If a service started anyway (systemd hosts ignore policy-rc.d in some setups), stop and
# disable it: the tests start their own etcd processes on free ports.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${as_root[@]}" systemctl disable --now etcd >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
    "${as_root[@]}" service etcd stop >/dev/null 2>&1 || true
fi

for tool in etcd protoc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "system-deps: '$tool' is still missing after installing ${missing[*]}" >&2
        exit 1
    fi
done
if [ ! -e /usr/include/google/protobuf/descriptor.proto ]; then
    echo "system-deps: protoc's google/protobuf/*.proto are still missing after installing ${missing[*]}" >&2
    exit 1
fi
