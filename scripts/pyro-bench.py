#!/usr/bin/env python3
"""Both directions of the Pyro5 dialect, per serializer, interleaved rounds, medians:

1. server: sequential calls/s of a Python Pyro5 proxy against `wirecall serve` and against
   a Python Pyro5 daemon serving the same echo method;
2. client (with --proxy-bench): sequential calls/s of a wirecall `PyroProxy` and of a
   wirecall `Proxy` in Pyro mode (the example `pyro_client_bench`) and of a Python Pyro5
   proxy, all against the same Python daemon.

    python3 scripts/pyro-bench.py [--wirecall PATH_TO_WIRECALL] [--seconds 2] [--rounds 3]
        [--proxy-bench PATH_TO_pyro_client_bench] [--only client|server]

Servers run as child processes on 127.0.0.1 (the Python daemon with the same interpreter).
Build first: `cargo build --release -p wirecall-cli` and
`cargo build --release -p wirecall --example pyro_client_bench`.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import Pyro5.api

DAEMON = r'''
import sys, Pyro5.api
@Pyro5.api.expose
class Demo:
    def echo(self, x):
        return x
d = Pyro5.api.Daemon(host="127.0.0.1", port=0)
uri = d.register(Demo(), "demo")
print(uri, flush=True)
d.requestLoop()
'''


def rate(uri, serializer, seconds):
    with Pyro5.api.Proxy(uri) as p:
        p._pyroSerializer = serializer
        p.echo("warm up")
        n, end = 0, time.perf_counter() + seconds
        t0 = time.perf_counter()
        while True:
            p.echo("wirecall echo payload, 32 bytes!")
            n += 1
            if n % 64 == 0 and time.perf_counter() >= end:
                break
        return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wirecall", default="target/release/wirecall")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--proxy-bench", default=None,
                    help="the pyro_client_bench example binary (the client direction)")
    ap.add_argument("--only", choices=["client", "server"], default=None)
    a = ap.parse_args()
    if a.only != "client":
        server_direction(a)
    if a.only != "server" and a.proxy_bench:
        client_direction(a)


def client_direction(a):
    """A wirecall PyroProxy, a wirecall Proxy in Pyro mode and a Python proxy against the
    same Python daemon."""
    py = subprocess.Popen([sys.executable, "-c", DAEMON], stdout=subprocess.PIPE, text=True)
    try:
        uri = py.stdout.readline().strip()
        print(f"\nclient direction: one Python Pyro5 daemon; {a.rounds} rounds of {a.seconds} s "
              f"per figure, medians")
        print(f"{'serializer':<10} {'Python proxy':>13} {'PyroProxy':>11} {'ratio':>6}"
              f" {'Proxy (Pyro mode)':>18} {'ratio':>6}")
        for ser in ["serpent", "msgpack", "json", "marshal"]:
            py_r, wc_r, px_r = [], [], []
            for _ in range(a.rounds):
                py_r.append(rate(uri, ser, a.seconds))
                for mode, into in (("pyro", wc_r), ("proxy", px_r)):
                    out = subprocess.run([a.proxy_bench, uri, ser, str(a.seconds), mode],
                                         capture_output=True, text=True, check=True)
                    into.append(float(out.stdout.strip()))
            p = statistics.median(py_r)
            w, x = statistics.median(wc_r), statistics.median(px_r)
            print(f"{ser:<10} {p:>11.0f}/s {w:>9.0f}/s {w / p:>5.2f}x {x:>16.0f}/s {x / p:>5.2f}x",
                  flush=True)
    finally:
        py.terminate()
        py.wait()


def server_direction(a):
    wc = subprocess.Popen([a.wirecall, "serve", "--listen", "tcp://127.0.0.1:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    py = subprocess.Popen([sys.executable, "-c", DAEMON], stdout=subprocess.PIPE, text=True)
    try:
        addr = wc.stdout.readline().split()[0]
        wc_uri = "PYRO:demo@" + addr[len("tcp://"):]
        py_uri = py.stdout.readline().strip()
        print(f"Pyro5 {Pyro5.__version__}, Python {sys.version.split()[0]}; "
              f"{a.rounds} rounds of {a.seconds} s per figure, medians")
        print(f"{'serializer':<10} {'Python daemon':>14} {'wirecall':>10} {'ratio':>6}")
        for ser in ["serpent", "msgpack", "json", "marshal"]:
            py_r, wc_r = [], []
            for _ in range(a.rounds):
                py_r.append(rate(py_uri, ser, a.seconds))
                wc_r.append(rate(wc_uri, ser, a.seconds))
            p, w = statistics.median(py_r), statistics.median(wc_r)
            print(f"{ser:<10} {p:>12.0f}/s {w:>8.0f}/s {w / p:>5.2f}x")
    finally:
        wc.terminate()
        py.terminate()
        wc.wait()
        py.wait()


if __name__ == "__main__":
    main()
