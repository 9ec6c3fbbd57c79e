"""Generates serpent_floats.txt: f64 bit patterns and CPython's repr() of each, for the
serpent float-repr differential test. Run with the reference interpreter (CPython 3.11.7):

    python gen_serpent_floats.py > serpent_floats.txt

Each line is `<16 hex digits of the IEEE-754 bits> <repr>`. Fixed seed, so the file is
reproducible.
"""
import math
import random
import struct

rng = random.Random(20261121)
values = []
# Uniformly random bit patterns (all exponents), skipping NaN.
while len(values) < 2000:
    bits = rng.getrandbits(64)
    v = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if not math.isnan(v):
        values.append(v)
# Values around the repr switch points and in everyday ranges.
for _ in range(500):
    values.append(rng.uniform(-1e17, 1e17))
for _ in range(500):
    values.append(rng.uniform(-1e-3, 1e-3))
for _ in range(300):
    values.append(round(rng.uniform(-1000, 1000), rng.randint(0, 6)))
for e in range(-325, 309):
    for m in (1.0, 1.5, 9.999999999999999, 5.0):
        try:
            values.append(float("%re%d" % (m, e)))
        except OverflowError:
            pass
values += [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
           1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 0.1, 0.2, 0.3, 1 / 3, 2.0 ** 53,
           2.0 ** 53 + 2, 2.0 ** 63, 2.0 ** 64, math.inf, -math.inf]
for v in values:
    print("%016x %s" % (struct.unpack("<Q", struct.pack("<d", v))[0], repr(v)))
