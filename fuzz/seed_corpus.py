#!/usr/bin/env python3
"""Writes seed inputs for every fuzz target to fuzz/seeds/<target>/ (generated, not committed).

Sources: the repository's own vectors (conformance/vectors) and, when present, the public
suites in ../shared/vectors (or $WIRECALL_VECTORS). Each seed is at most 64 KiB.
"""
import glob
import hashlib
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
own = os.path.join(repo, "conformance", "vectors")
shared = os.environ.get("WIRECALL_VECTORS") or os.path.join(repo, "..", "shared", "vectors")
out_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "seeds")
MAX = 64 << 10
counts = {}


def put(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data or len(data) > MAX:
        return
    d = os.path.join(out_root, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def walk(doc, keys):
    """Yields every string under one of `keys`, anywhere in a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in keys and isinstance(v, str):
                yield v
            elif k in keys and isinstance(v, list):
                for x in v:
                    if isinstance(x, str):
                        yield x
            else:
                yield from walk(v, keys)
    elif isinstance(doc, list):
        for x in doc:
            yield from walk(x, keys)


def unhex(s):
    try:
        return bytes.fromhex(s)
    except ValueError:
        return None


# decoder: every frame vector; the first byte is the target's selector (0x80 = 1 MiB frames).
for path in glob.glob(os.path.join(own, "frames", "*.json")):
    for h in walk(load(path), {"hex"}):
        b = unhex(h)
        if b is not None:
            put("decoder", b"\x80" + b)

# codecs: wirecall's own golden vectors, and the notation of their values.
for codec in ["json", "msgpack", "cbor", "bincode", "postcard", "ron", "serpent"]:
    doc = load(os.path.join(own, "codecs", codec + ".json")) or {}
    for v in doc.get("vectors", []):
        b = unhex(v.get("hex", "")) if isinstance(v.get("hex"), str) else None
        if b is not None:
            put("codec_" + codec, b)
            if codec == "json":
                put("codec_json_strict", b)
        if "value" in v:
            put("notation", json.dumps(v["value"], ensure_ascii=False))

# public suites
for path in glob.glob(os.path.join(shared, "json-test-suite", "test_parsing", "*.json")):
    with open(path, "rb") as f:
        data = f.read()
    put("codec_json", data)
    put("codec_json_strict", data)
for path in glob.glob(os.path.join(shared, "json-nativejson-benchmark", "data", "*.json")):
    with open(path, "rb") as f:
        data = f.read()
    put("codec_json", data[:MAX])
for path in glob.glob(os.path.join(shared, "msgpack-test-suite", "dist", "*.json")):
    for h in walk(load(path), {"msgpack"}):
        b = unhex(h.replace("-", ""))
        if b is not None:
            put("codec_msgpack", b)
for path in glob.glob(os.path.join(shared, "cbor-wg-test-vectors", "derived", "*.json")):
    for h in walk(load(path), {"encoded", "decoded_cbor", "hex"}):
        b = unhex(h)
        if b is not None:
            put("codec_cbor", b)
for path in glob.glob(os.path.join(shared, "bincode", "*.json")):
    for h in walk(load(path), {"bincode2_serde_config_standard"}):
        b = unhex(h)
        if b is not None:
            put("codec_bincode", b)
for path in glob.glob(os.path.join(shared, "ron", "**", "*.ron"), recursive=True):
    with open(path, "rb") as f:
        put("codec_ron", f.read())
for path in glob.glob(os.path.join(shared, "serpent", "*.json")):
    for s in walk(load(path), {"serpent"}):
        put("codec_serpent", s)
for path in glob.glob(os.path.join(shared, "serpent", "upstream-data", "*")):
    with open(path, "rb") as f:
        put("codec_serpent", f.read())

for target in sorted(counts):
    print(f"  {target}: {counts[target]} seeds")
