"""The wirecall vector notation (see ../NOTATION.md) for Python values.

parse(text) -> Python object, dumps(obj) -> notation text. Mapping:
null/None, true/false, int (any size; $int), float ($float for nan/inf/-0.0, $f64 for exact
bits), str, list, {"$bytes": hex} <-> bytes, {"$tuple": [...]} <-> tuple,
{"$set": [...]} <-> set, {"$map": [[k, v], ...]} <-> dict with non-string keys, plain
objects <-> dict with str keys (order kept), {"$ext": [tag, hex]} <-> Ext(tag, data) (msgpack
ext values; dumps also accepts msgpack.ExtType and msgpack.Timestamp).
"""

import collections
import json
import math
import struct

# A msgpack ext value: tag in -128..127, data bytes (a timestamp is tag -1).
Ext = collections.namedtuple("Ext", "tag data")

SAFE_INT = 1 << 53
CANONICAL_NAN = 0x7FF8000000000000


class NotationError(ValueError):
    """A value that the notation cannot express, or a malformed document."""


def _f64_bits(f):
    return struct.unpack(">Q", struct.pack(">d", f))[0]


def _from_bits(bits):
    return struct.unpack(">d", struct.pack(">Q", bits))[0]


def _hashable(v):
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v


def _convert(j):
    if isinstance(j, list):
        return [_convert(x) for x in j]
    if isinstance(j, _Pairs):
        pairs = j.pairs
        if len(pairs) == 1 and pairs[0][0].startswith("$"):
            tag, inner = pairs[0]
            if tag == "$bytes":
                return bytes.fromhex(inner)
            if tag == "$int":
                return int(inner)
            if tag == "$float":
                return float(inner)
            if tag == "$f64":
                return _from_bits(int(inner, 16))
            if tag == "$tuple":
                return tuple(_convert(x) for x in inner)
            if tag == "$set":
                return set(_hashable(_convert(x)) for x in inner)
            if tag == "$ext":
                if not (isinstance(inner, list) and len(inner) == 2 and isinstance(inner[0], int)
                        and -128 <= inner[0] <= 127 and isinstance(inner[1], str)):
                    raise NotationError('$ext takes [tag, "hex"] with tag in -128..127')
                return Ext(inner[0], bytes.fromhex(inner[1]))
            if tag == "$map":
                out = {}
                for k, v in inner:
                    out[_hashable(_convert(k))] = _convert(v)
                return out
            raise NotationError("unknown tag %r" % tag)
        return {k: _convert(v) for k, v in pairs}
    return j


class _Pairs:
    def __init__(self, pairs):
        self.pairs = pairs


def _int_or_float(text):
    return int(text)


def parse(text):
    """Parses notation text into Python objects."""
    doc = json.loads(
        text,
        object_pairs_hook=_Pairs,
        parse_int=int,
        parse_float=float,
    )
    return _convert(doc)


def _float(f):
    if math.isnan(f):
        bits = _f64_bits(f)
        if bits == CANONICAL_NAN:
            return '{"$float":"nan"}'
        return '{"$f64":"%016x"}' % bits
    if math.isinf(f):
        return '{"$float":"inf"}' if f > 0 else '{"$float":"-inf"}'
    if f == 0.0 and math.copysign(1.0, f) < 0:
        return '{"$float":"-0.0"}'
    return repr(f)


def dumps(v):
    """Prints a Python object in the notation (compact)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if -SAFE_INT <= v <= SAFE_INT:
            return str(v)
        return '{"$int":"%d"}' % v
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return '{"$bytes":"%s"}' % bytes(v).hex()
    if isinstance(v, list):
        return "[" + ",".join(dumps(x) for x in v) + "]"
    if isinstance(v, Ext) or type(v).__name__ == "ExtType":
        return '{"$ext":[%d,"%s"]}' % (v[0], bytes(v[1]).hex())
    if type(v).__name__ == "Timestamp" and hasattr(v, "to_bytes"):
        return '{"$ext":[-1,"%s"]}' % v.to_bytes().hex()
    if isinstance(v, tuple):
        return '{"$tuple":[' + ",".join(dumps(x) for x in v) + "]}"
    if isinstance(v, (set, frozenset)):
        return '{"$set":[' + ",".join(dumps(x) for x in v) + "]}"
    if isinstance(v, dict):
        keys = list(v.keys())
        plain = all(isinstance(k, str) for k in keys) and not (
            len(keys) == 1 and keys[0].startswith("$")
        )
        if plain:
            return "{" + ",".join(json.dumps(k) + ":" + dumps(x) for k, x in v.items()) + "}"
        return '{"$map":[' + ",".join("[" + dumps(k) + "," + dumps(x) + "]" for k, x in v.items()) + "]}"
    raise NotationError("no notation for %s %r" % (type(v).__name__, v))
