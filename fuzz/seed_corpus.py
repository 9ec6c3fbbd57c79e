#!/usr/bin/env python3
"""Writes the frame vectors as a seed corpus: fuzz/corpus/decoder/<vector name>."""
import glob
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "decoder")
os.makedirs(out, exist_ok=True)
for path in glob.glob(os.path.join(here, "..", "conformance", "vectors", "frames", "*.json")):
    doc = json.load(open(path))
    for v in doc.get("vectors", []):
        # The first byte is the target's selector (chunk size and limits); 0x80 = 1 MiB frames.
        with open(os.path.join(out, v["name"]), "wb") as f:
            f.write(b"\x80" + bytes.fromhex(v["hex"]))
