#!/usr/bin/env python3
"""Server memory per idle connection: starts `wirecall serve` on loopback, opens N
connections that complete the handshake and then stay idle, and reports the growth of the
server's resident set (VmRSS) per connection, then closes them all.

Usage: python3 scripts/idle-memory.py [--connections N] [--binary PATH]
(build first: cargo build --release -p wirecall-cli). Linux only (reads /proc).
"""

import argparse
import os
import socket
import subprocess
import sys
import time

# A HELLO offering json, msgpack and cbor with the default limits (SPEC §6.1), as in the
# session vector `server-handshake`.
HELLO = bytes.fromhex(
    "89574350010100000000000000000000000000000000000000000000000000120000000000000000"
    "010103030201010000000000400000000080"
)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--binary", default="target/release/wirecall")
    ap.add_argument("--settle", type=float, default=1.0)
    args = ap.parse_args()
    server = subprocess.Popen(
        [args.binary, "serve", "--listen", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        addr = server.stdout.readline().strip().split()[0]
        host, port = addr.removeprefix("tcp://").rsplit(":", 1)
        # Warm up: one connection, so the runtime's own first allocations are not counted.
        warm = socket.create_connection((host, int(port)))
        warm.sendall(HELLO)
        warm.recv(4096)
        time.sleep(args.settle)
        before = rss_kib(server.pid)
        socks = []
        for _ in range(args.connections):
            s = socket.create_connection((host, int(port)))
            s.sendall(HELLO)
            socks.append(s)
        for s in socks:
            got = s.recv(4096)
            if not got:
                sys.exit("the server closed a connection during the handshake")
        time.sleep(args.settle)
        after = rss_kib(server.pid)
        per = (after - before) * 1024 / args.connections
        print(
            f"{args.connections} idle connections: server RSS {before} KiB -> {after} KiB, "
            f"{per / 1024:.2f} KiB per connection"
        )
        for s in socks:
            s.close()
        warm.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
