"""Generates wirecall's golden codec vectors: conformance/vectors/codecs/<codec>.json.

Run from the repository root with the reference venv (serpent 1.43, msgpack, cbor2):

    PYTHONHASHSEED=0 target/pyref/bin/python conformance/python/gen_golden.py

Where wirecall's documented Value mapping matches a Python reference library, the expected
bytes are that library's output ("source": "python ..."), and the expected decoded value is
what the library's own loads gives back. Where wirecall deliberately differs, the vector is
written by hand below, with a "note" saying why and which rule of the format specification
the bytes follow ("source": "hand ..."). bincode and postcard have no Python implementation:
their bytes come from the small spec encoders in this file (bincode docs/spec.md varint rules
for config::standard(), the postcard wire specification), checked against
../shared/vectors/bincode for the integer forms.
"""

import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import notation  # noqa: E402

import cbor2  # noqa: E402
import msgpack  # noqa: E402
import serpent  # noqa: E402

OUT = os.path.join(HERE, "..", "vectors", "codecs")

# ---------------------------------------------------------------------------------------------
# The cases: (name, value in the notation). Every codec gets every case; a codec that cannot
# carry a value gets an encode_error vector instead.

INT_EDGES = [
    0, 1, 23, 24, 31, 32, 127, 128, 250, 251, 255, 256, 65535, 65536,
    2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1,
    -1, -24, -25, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63,
]
BIG_INTS = [2**64, -2**63 - 1, -2**64, -2**64 - 1, 2**127 - 1, -2**127, 2**128 - 1, 2**128,
            -123456789012345678901234567890123456789012345]

CASES = []


def case(name, text):
    CASES.append((name, text))


case("null", "null")
case("true", "true")
case("false", "false")
for i in INT_EDGES:
    case("int %d" % i, notation.dumps(i))
for i in BIG_INTS:
    case("big int %d" % i, notation.dumps(i))
for f in [0.0, 1.0, -1.5, 0.5, 0.1, 1e16, 1e15, 1e-4, 1e-5, 1e-7, 65504.0, 100000.0,
          5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 3.4028234663852886e38,
          1.2345678901234568e20, 123.456]:
    case("float %r" % f, notation.dumps(f))
case("float -0.0", '{"$float":"-0.0"}')
case("float nan", '{"$float":"nan"}')
case("float inf", '{"$float":"inf"}')
case("float -inf", '{"$float":"-inf"}')
case("str empty", '""')
case("str ascii", '"a"')
case("str unicode", '"é€😀"')
case("str controls", '"\\u0000\\u001f\\u007f"')
case("str escapes", '"\\"\\\\/\\b\\f\\n\\r\\t"')
case("str script U+2028", '"</script>\\u2028"')
case("str quotes", "\"it's \\\"x\\\"\"")
case("str nbsp", '"\\u00a0x"')
case("str 31 chars", json.dumps("x" * 31))
case("str 32 chars", json.dumps("x" * 32))
case("str 256 chars", json.dumps("y" * 256))
case("bytes empty", '{"$bytes":""}')
case("bytes 00ff", '{"$bytes":"00ff"}')
case("bytes 32", '{"$bytes":"%s"}' % bytes(range(32)).hex())
case("list empty", "[]")
case("list ints", "[1,2,3]")
case("list 15", json.dumps(list(range(15))))
case("list 16", json.dumps(list(range(16))))
case("list nested", "[1,[2,[3,[]]],{}]")
case("list mixed", '[null,true,-1,1.5,"s",{"$bytes":"01"}]')
case("tuple empty", '{"$tuple":[]}')
case("tuple one", '{"$tuple":[1]}')
case("tuple pair", '{"$tuple":[1,"a"]}')
case("set ints", '{"$set":[1,2,3]}')
case("set one str", '{"$set":["a"]}')
case("map empty", "{}")
case("map one", '{"a":1}')
case("map order kept", '{"b":1,"a":2}')
case("map sorted keys", '{"a":1,"b":2}')
case("map nested", '{"a":{"b":{"c":[]}}}')
case("map int keys", '{"$map":[[10,0],[-1,0],[100,0]]}')
case("map mixed keys", '{"$map":[[10,0],[-1,0],["a",0],[100,0]]}')
case("map bool key", '{"$map":[[true,"t"]]}')
case("map null key", '{"$map":[[null,0]]}')
case("map float key", '{"$map":[[1.5,0]]}')
case("map bytes key", '{"$map":[[{"$bytes":"00"},0]]}')
case("map tuple key", '{"$map":[[{"$tuple":[1,2]},0]]}')
case("map list key", '{"$map":[[[1],0]]}')
case("map 16 entries", "{" + ",".join('"k%02d":%d' % (i, i) for i in range(16)) + "}")
case("record", '{"name":"wirecall","id":7,"tags":["a","b"],"ratio":0.25,"ok":true,"none":null}')


# ---------------------------------------------------------------------------------------------
# Per-codec expectation builders. Each returns a dict with the vector fields besides
# name/value (hex or text, decoded, encode_error, source, note).

def contains(obj, pred):
    if pred(obj):
        return True
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(contains(x, pred) for x in obj)
    if isinstance(obj, dict):
        return any(contains(k, pred) or contains(v, pred) for k, v in obj.items())
    return False


def has_big(obj):
    return contains(obj, lambda x: isinstance(x, int) and not isinstance(x, bool)
                    and not (-2**63 <= x < 2**64))


def has_type(obj, *types):
    return contains(obj, lambda x: isinstance(x, types))


def decoded_field(value_text, decoded_obj):
    """The `decoded` field when the decoded value differs from the value written."""
    text = notation.dumps(decoded_obj)
    if text == notation.dumps(notation.parse(value_text)):
        return {}
    return {"decoded": json.loads(text)}


def json_conv(x):
    """Bytes -> list of ints, set -> list (in the notation's element order)."""
    if isinstance(x, bytes):
        return list(x)
    if isinstance(x, OrderedSet):
        return [json_conv(e) for e in x.items]
    if isinstance(x, (set, frozenset)):
        return [json_conv(e) for e in x]
    if isinstance(x, (list, tuple)):
        return [json_conv(e) for e in x]
    if isinstance(x, dict):
        return {k: json_conv(v) for k, v in x.items()}
    return x


class OrderedSet:
    """Placeholder type: sets in the cases are real Python sets (small ints iterate in order)."""


# Python's repr and serde_json (wirecall's json floats) differ only here among the cases.
JSON_FLOAT_OVERRIDES = {
    1e-5: ("0.00001", "serde_json (ryu) writes 1e-5 without an exponent; Python writes 1e-05. Both are RFC 8259 numbers for the same f64"),
    1e-7: ("1e-7", "serde_json (ryu) writes no zero padding in the exponent; Python writes 1e-07. Same f64"),
    5e-324: ("5e-324", None),
}


def build_json_case(name, text, obj):
    if isinstance(obj, float) and obj in JSON_FLOAT_OVERRIDES and JSON_FLOAT_OVERRIDES[obj][1]:
        t, note = JSON_FLOAT_OVERRIDES[obj]
        return {"text": t, "source": "hand (RFC 8259 number grammar)", "note": note}
    if contains(obj, lambda x: isinstance(x, dict) and any(isinstance(k, (tuple, bytes)) for k in x)):
        return {"encode_error": "Unsupported", "source": "python json.dumps raises TypeError",
                "note": "JSON keys must be strings; bytes and tuple keys are refused (Python refuses them too); "
                        "int, float, bool and null keys become strings as in Python"}
    deviates = has_type(obj, bytes, set, frozenset)
    data = json.dumps(json_conv(obj), ensure_ascii=False, separators=(",", ":"))
    out = {"text": data}
    out.update(decoded_field(text, json.loads(data)))
    if deviates:
        out["source"] = "hand: python json.dumps of the value with bytes and sets turned into lists"
        out["note"] = ("wirecall writes bytes as an array of numbers (as serde_json does) and sets as arrays; "
                       "Python's json refuses both. They decode as lists")
    else:
        out["source"] = "python json.dumps(ensure_ascii=False, separators=(',',':'))"
    return out


def build_msgpack(name, text, obj):
    if has_big(obj):
        return {"encode_error": "Unsupported", "source": "python msgpack.packb raises OverflowError",
                "note": "msgpack integers are 64-bit; wider ones are refused, as Python refuses them"}
    if contains(obj, lambda x: isinstance(x, dict) and any(isinstance(k, tuple) for k in x)):
        # Python packs a tuple key as an array and can only read it back with use_list=False.
        data = msgpack.packb(obj, use_bin_type=True)
        dec = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False)
        return {"hex": data.hex(), "decoded": json.loads(notation.dumps(untuple_keys(dec))),
                "source": "python msgpack.packb(use_bin_type=True)",
                "note": "a tuple key is written as an array; wirecall decodes it as a list key"}
    deviates = has_type(obj, set, frozenset)
    data = msgpack.packb(json_conv_sets(obj), use_bin_type=True)
    out = {"hex": data.hex()}
    out.update(decoded_field(text, msgpack.unpackb(data, raw=False, strict_map_key=False)))
    if deviates:
        out["source"] = "hand: python msgpack.packb of the value with sets turned into lists"
        out["note"] = "msgpack has no set type; wirecall writes a set as an array (Python refuses sets)"
    else:
        out["source"] = "python msgpack.packb(use_bin_type=True)"
    return out


def untuple_keys(x):
    if isinstance(x, dict):
        return NotationPairs([(list(k) if isinstance(k, tuple) else k, untuple_keys(v)) for k, v in x.items()])
    if isinstance(x, tuple):
        return [untuple_keys(e) for e in x]
    if isinstance(x, list):
        return [untuple_keys(e) for e in x]
    return x


class NotationPairs(dict):
    """A dict stand-in whose keys may be lists (printed with $map)."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs

    def items(self):
        return self.pairs

    def keys(self):
        return [k for k, _ in self.pairs]


def json_conv_sets(x):
    if isinstance(x, OrderedSet):
        return [json_conv_sets(e) for e in x.items]
    if isinstance(x, (set, frozenset)):
        return [json_conv_sets(e) for e in x]
    if isinstance(x, list):
        return [json_conv_sets(e) for e in x]
    if isinstance(x, tuple):
        return tuple(json_conv_sets(e) for e in x)
    if isinstance(x, dict):
        return {k: json_conv_sets(v) for k, v in x.items()}
    return x


def cbor_sorted_maps(obj):
    """True when every map's keys are already in cbor2's canonical (length-first) order, so
    canonical=True (which wirecall matches for floats) writes the keys in insertion order."""
    ok = [True]

    def walk(x):
        if isinstance(x, dict):
            keys = list(x.keys())
            enc = [cbor2.dumps(k, canonical=True) for k in keys]
            if enc != sorted(enc, key=lambda b: (len(b), b)):
                ok[0] = False
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple, set, frozenset)):
            for e in x:
                walk(e)
    walk(obj)
    return ok[0]


def build_cbor(name, text, obj):
    if contains(obj, lambda x: isinstance(x, dict) and any(isinstance(k, tuple) for k in x)):
        data = cbor2.dumps(obj, canonical=True)
        return {"hex": data.hex(), "decoded": json.loads(notation.dumps(untuple_keys(cbor2.loads(data)))),
                "source": "python cbor2.dumps(canonical=True)",
                "note": "a tuple key is an array; cbor2 reads it back as a tuple, wirecall as a list key"}
    if not cbor_sorted_maps(obj):
        # cbor2 canonical=True would sort the keys; wirecall keeps insertion order. Encode each
        # entry with cbor2 and assemble the map header by hand (RFC 8949 §3.1, major type 5).
        data = cbor_map_in_order(obj)
        out = {"hex": data.hex(), "source": "hand: RFC 8949 map (major type 5) with cbor2(canonical=True) items",
               "note": "wirecall writes map entries in insertion order (RFC 8949 preferred serialization does not "
                       "require sorting); cbor2 canonical=True would sort them length-first"}
        out.update(decoded_field(text, cbor2.loads(data)))
        return out
    data = cbor2.dumps(obj, canonical=True)
    out = {"hex": data.hex(), "source": "python cbor2.dumps(canonical=True)"}
    if has_type(obj, tuple):
        out["note"] = "CBOR has no tuple; a tuple is written as an array and decodes as a list"
    if has_type(obj, float) and not cbor_default_same(obj):
        out.setdefault("note", "wirecall writes floats in their shortest lossless form (RFC 8949 preferred "
                               "serialization), like cbor2 canonical=True; cbor2's default writes float64")
    out.update(decoded_field(text, cbor2.loads(data)))
    return out


def cbor_default_same(obj):
    return cbor2.dumps(obj) == cbor2.dumps(obj, canonical=True)


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    raise ValueError(n)


def cbor_map_in_order(x):
    if isinstance(x, dict):
        out = cbor_head(5, len(x))
        for k, v in x.items():
            out += cbor_map_in_order(k) + cbor_map_in_order(v)
        return out
    if isinstance(x, (list, tuple)):
        out = cbor_head(4, len(x))
        for e in x:
            out += cbor_map_in_order(e)
        return out
    return cbor2.dumps(x, canonical=True)


def build_serpent(name, text, obj):
    try:
        data = serpent.dumps(obj)
    except Exception as e:  # noqa: BLE001
        return {"encode_error": "Unsupported", "source": "python serpent.dumps raises %s" % type(e).__name__,
                "note": str(e)}
    out = {"text": data.decode("utf-8"), "source": "python serpent.dumps (serpent %s)" % serpent.__version__}
    try:
        back = serpent.loads(data)
    except Exception as e:  # noqa: BLE001
        out["decode_error"] = "any"
        out["note"] = ("Python writes this but its serpent.loads raises %s (%s); the text is pinned, and "
                       "decoding it must fail as in Python" % (type(e).__name__, e))
        return out
    try:
        out.update(decoded_field(text, back))
    except notation.NotationError:
        pass
    return out


# --- bincode config::standard() and postcard: spec encoders over wirecall's serde mapping of
# Value (Null -> unit, Int -> i64 / u64 / i128 / u128 by range, Float -> f64, Str -> str,
# Bytes -> bytes, List/Set -> seq, Tuple -> tuple (no length), Map -> map).

def bincode_varint_u(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + n.to_bytes(2, "little")
    if n < 1 << 32:
        return b"\xfc" + n.to_bytes(4, "little")
    if n < 1 << 64:
        return b"\xfd" + n.to_bytes(8, "little")
    return b"\xfe" + n.to_bytes(16, "little")


def zigzag(n, bits):
    return (n << 1) ^ (n >> (bits - 1)) if n < 0 else n << 1


def leb128(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Unrepresentable(Exception):
    pass


def serde_encode(x, varint, signed_varint):
    """Encodes through the serde data model with the given varint functions."""
    if x is None:
        return b""
    if x is True:
        return b"\x01"
    if x is False:
        return b"\x00"
    if isinstance(x, int):
        if -2**63 <= x < 2**63:
            return signed_varint(x, 64)
        if 0 <= x < 2**64:
            return varint(x)
        if -2**127 <= x < 2**127:
            return signed_varint(x, 128)
        if 0 <= x < 2**128:
            return varint(x)
        raise Unrepresentable("wider than 128 bits")
    if isinstance(x, float):
        return struct.pack("<d", x)
    if isinstance(x, str):
        b = x.encode("utf-8")
        return varint(len(b)) + b
    if isinstance(x, bytes):
        return varint(len(x)) + x
    if isinstance(x, tuple):
        return b"".join(serde_encode(e, varint, signed_varint) for e in x)
    if isinstance(x, OrderedSet):
        return varint(len(x.items)) + b"".join(serde_encode(e, varint, signed_varint) for e in x.items)
    if isinstance(x, (list, set, frozenset)):
        return varint(len(x)) + b"".join(serde_encode(e, varint, signed_varint) for e in x)
    if isinstance(x, dict):
        return varint(len(x)) + b"".join(
            serde_encode(k, varint, signed_varint) + serde_encode(v, varint, signed_varint) for k, v in x.items())
    raise TypeError(type(x))


def build_binary(codec):
    if codec == "bincode":
        varint = bincode_varint_u

        def signed(n, bits):
            return bincode_varint_u(zigzag(n, bits))
        spec = "bincode 2 config::standard() (varint: <251 one byte, 251/252/253/254 + u16/u32/u64/u128 LE; zigzag for signed)"
    else:
        varint = leb128

        def signed(n, bits):
            return leb128(zigzag(n, bits))
        spec = "postcard wire spec (LEB128 varints, zigzag for signed, f64 little-endian)"

    def build(name, text, obj):
        try:
            data = serde_encode(obj, varint, signed)
        except Unrepresentable as e:
            return {"encode_error": "Encode", "source": "hand: " + spec,
                    "note": "integer %s: the serde data model stops at 128 bits" % e}
        return {"hex": data.hex(), "decode_error": "NotSelfDescribing", "source": "hand: spec encoder"}
    return build


# ---------------------------------------------------------------------------------------------

def obj_of(text):
    """The Python object for a notation text, with sets kept in notation order."""
    return restore_sets(json.loads(text, object_pairs_hook=notation._Pairs))


def restore_sets(j):
    if isinstance(j, list):
        return [restore_sets(e) for e in j]
    if isinstance(j, notation._Pairs):
        if len(j.pairs) == 1 and j.pairs[0][0] == "$set":
            items = [restore_sets(e) for e in j.pairs[0][1]]
            s = set(items)
            # Python iterates small-int sets in order; the cases keep it that way.
            if list(s) != items:
                raise SystemExit("set %r iterates in another order in Python" % items)
            return s
        if len(j.pairs) == 1 and j.pairs[0][0] in ("$tuple", "$map"):
            tag, inner = j.pairs[0]
            if tag == "$tuple":
                return tuple(restore_sets(e) for e in inner)
            out = {}
            for k, v in inner:
                k = restore_sets(k)
                if isinstance(k, list):
                    return ListKeyMap([(k, restore_sets(v)) for k, v in inner])
                out[k] = restore_sets(v)
            return out
        if len(j.pairs) == 1 and j.pairs[0][0].startswith("$"):
            return notation._convert(j)
        return {k: restore_sets(v) for k, v in j.pairs}
    return j


class ListKeyMap:
    """A map with list keys: no Python library can write it."""

    def __init__(self, pairs):
        self.pairs = pairs


BUILDERS = {
    "json": build_json_case,
    "msgpack": build_msgpack,
    "cbor": build_cbor,
    "serpent": build_serpent,
    "bincode": build_binary("bincode"),
    "postcard": build_binary("postcard"),
}

DESCRIPTIONS = {
    "json": "wirecall json, dynamic path (encode_value/decode_value): Python json compatible",
    "msgpack": "wirecall msgpack: msgpack-python packb(use_bin_type=True) compatible",
    "cbor": "wirecall cbor: RFC 8949 preferred serialization, cbor2 canonical=True compatible except map order",
    "serpent": "wirecall serpent: byte-identical to Python serpent.dumps (compact, header)",
    "bincode": "wirecall bincode (2.x config::standard()) through serde. Bytes from this file's spec encoder: "
               "varint = one byte below 251, else 251/252/253/254 + u16/u32/u64/u128 little-endian; zigzag for "
               "signed; f64 little-endian. Value goes through serde: Null -> unit (no bytes), ints -> "
               "i64/u64/i128/u128 by range, Tuple -> tuple (no length), Set/List -> seq, Map -> map. Not "
               "self-describing: decode_value refuses (NotSelfDescribing); decode into the Rust type instead",
    "postcard": "wirecall postcard 1.x through serde. Bytes from this file's spec encoder (postcard wire spec): "
                "LEB128 varints, zigzag for signed, f64 little-endian. Value goes through serde as for bincode. "
                "Not self-describing: decode_value refuses (NotSelfDescribing)",
}

# Decode-side vectors: bytes that must be rejected, or non-preferred forms that must decode.
EXTRA = {
    "json": [
        {"name": "reject trailing comma", "text": "[1,]", "decode_error": "Decode"},
        {"name": "reject single quotes", "text": "['a']", "decode_error": "Decode"},
        {"name": "reject lone surrogate escape", "text": "\"\\ud800\"", "decode_error": "any"},
        {"name": "accept whitespace", "text": " [ 1 , 2 ] ", "value": [1, 2], "decode_only": True},
        {"name": "accept escaped solidus", "text": "\"\\/\"", "value": "/", "decode_only": True},
        {"name": "accept Python NaN token", "text": "NaN", "value": {"$float": "nan"}, "decode_only": True,
         "note": "read as Python's json reads it (documented deviation from RFC 8259)"},
        {"name": "duplicate keys kept", "text": "{\"a\":1,\"a\":2}", "value": {"a": 1, "a ": 0},
         "decode_only": True},
    ],
    "msgpack": [
        {"name": "reject truncated str", "hex": "a2 61".replace(" ", ""), "decode_error": "Decode"},
        {"name": "reject trailing byte", "hex": "c0c0", "decode_error": "Decode"},
        {"name": "ext fixext 1", "hex": "d40110", "value": {"$ext": [1, "10"]},
         "note": "msgpack ext values are Value::Ext; the smallest form is written"},
        {"name": "ext 8 (3 bytes)", "hex": "c70305616263", "value": {"$ext": [5, "616263"]},
         "note": "no fixext holds 3 bytes"},
        {"name": "timestamp 32-bit", "hex": "d6ff00000001", "value": {"$ext": [-1, "00000001"]},
         "note": "msgpack Timestamp(1, 0): ext -1 with a 4-byte payload"},
        {"name": "reject 4 GiB str header", "hex": "dbffffffff61", "decode_error": "Decode"},
        {"name": "accept non-minimal int", "hex": "cd0001", "value": 1, "decode_only": True},
        {"name": "accept float32", "hex": "ca3f800000", "value": 1.0, "decode_only": True},
        {"name": "accept old raw str", "hex": "da000161", "value": "a", "decode_only": True},
    ],
    "cbor": [
        {"name": "reject truncated", "hex": "19", "decode_error": "Decode"},
        {"name": "reject reserved ai", "hex": "1c", "decode_error": "Decode"},
        {"name": "reject break outside", "hex": "ff", "decode_error": "Decode"},
        {"name": "reject tag 1 (no Value form)", "hex": "c11a514b67b0", "decode_error": "Unsupported"},
        {"name": "accept non-preferred int", "hex": "1800", "value": 0, "decode_only": True},
        {"name": "accept float64 1.0", "hex": "fb3ff0000000000000", "value": 1.0, "decode_only": True},
        {"name": "accept indefinite array", "hex": "9f0102ff", "value": [1, 2], "decode_only": True},
        {"name": "accept self-describe tag", "hex": "d9d9f701", "value": 1, "decode_only": True},
    ],
    "serpent": [
        {"name": "reject no expression", "text": "# serpent utf-8 python3.2\n", "decode_error": "Decode"},
        {"name": "reject function call", "text": "# serpent utf-8 python3.2\nopen('x')", "decode_error": "Decode"},
        {"name": "accept no header", "text": "[1,2]", "value": [1, 2], "decode_only": True},
        {"name": "accept comments and spaces", "text": "# serpent utf-8 python3.2\n[ 1 , # one\n 2 ]",
         "value": [1, 2], "decode_only": True},
        {"name": "accept double quotes", "text": "# serpent utf-8 python3.2\n\"a\"", "value": "a",
         "decode_only": True},
        {"name": "bytes dict stays a dict", "text": "# serpent utf-8 python3.2\n{'data': 'AAE=', 'encoding': 'base64'}",
         "value": {"data": "AAE=", "encoding": "base64"}, "decode_only": True,
         "note": "as serpent.loads: the base64 dict is not turned into bytes (Pyro does that)"},
    ],
    "bincode": [
        {"name": "any bytes: not self-describing", "hex": "00", "decode_error": "NotSelfDescribing"},
    ],
    "postcard": [
        {"name": "any bytes: not self-describing", "hex": "00", "decode_error": "NotSelfDescribing"},
    ],
}


# RON has no Python implementation: these vectors are written by hand, each checked against
# ../shared/vectors/ron/docs/grammar.md (ron 0.12.2); `rule` names the grammar production.
RON_VECTORS = [
    ("null", "null", "()", None, "unit: `()` (tuple of zero elements); decodes to null"),
    ("true", "true", "true", None, "bool"),
    ("int 0", "0", "0", None, "integer"),
    ("int -1", "-1", "-1", None, "integer with sign"),
    ("int u64 max", '{"$int":"18446744073709551615"}', "18446744073709551615", None, "integer (fits u64)"),
    ("int i64 min", '{"$int":"-9223372036854775808"}', "-9223372036854775808", None, "integer (fits i64)"),
    ("float 1.5", "1.5", "1.5", None, "float_std"),
    ("float 0.1", "0.1", "0.1", None, "float_std, shortest round-trip digits"),
    ("float 1e16", "1e16", "1e16", None, "float_int float_exp: `1e16`"),
    ("float -0.0", '{"$float":"-0.0"}', "-0.0", None, "float with sign"),
    ("float nan", '{"$float":"nan"}', "NaN", None, "float = \"NaN\""),
    ("float inf", '{"$float":"inf"}', "inf", None, "float = \"inf\""),
    ("float -inf", '{"$float":"-inf"}', "-inf", None, "float = \"-\" \"inf\""),
    ("str", '"a\\"b"', '"a\\"b"', None, "string_std with escape_ascii `\\\"`"),
    ("str unicode and escapes", '"é\\n\\u0000"', '"é\\n\\0"', None, "raw UTF-8; escape_ascii `\\n` and `\\0`"),
    ("bytes", '{"$bytes":"00ff41"}', 'b"\\x00\\xffA"', None, "byte_string_std with escape_byte `\\xNN`"),
    ("list", "[1,-2,1.5,true]", "[1,-2,1.5,true]", None, "list"),
    ("list empty", "[]", "[]", None, "list"),
    ("tuple", '{"$tuple":[1,"a"]}', '(1,"a")', [1, "a"], "tuple; decodes as a list (RON's dynamic reading cannot tell)"),
    ("set", '{"$set":[1,2]}', "[1,2]", [1, 2], "RON has no set: written as a list"),
    ("map", '{"b":1,"a":2}', '{"b":1,"a":2}', None, "map, insertion order kept"),
    ("map int keys", '{"$map":[[1,2],[-3,4]]}', "{1:2,-3:4}", None, "map keys may be any value"),
    ("map empty", "{}", "{}", None, "map"),
    ("nested", '{"a":[{"b":null}]}', '{"a":[{"b":()}]}', None, "nesting"),
]


def ron_vectors():
    out = []
    for name, value, text, decoded, rule in RON_VECTORS:
        v = {"name": name, "value": json.loads(value), "text": text, "source": "hand: ron grammar.md",
             "note": rule}
        if decoded is not None:
            v["decoded"] = decoded
        out.append(v)
    out.append({"name": "int beyond 64 bits", "value": {"$int": "18446744073709551616"}, "encode_error": "Encode",
                "source": "hand", "note": "wirecall builds ron without integer128: integers must fit 64 bits"})
    out.append({"name": "reject unterminated list", "text": "[1,", "decode_error": "Decode", "source": "hand"})
    out.append({"name": "accept comments and trailing comma", "text": "[1, /* c */ 2, // d\n]", "value": [1, 2],
                "decode_only": True, "source": "hand: grammar.md comments and trailing commas"})
    return out


def fix_extra(v):
    # The duplicate-keys vector needs a map with a repeated key, which a Python dict cannot
    # hold; write its value in the notation directly.
    if v.get("name") == "duplicate keys kept":
        v["value"] = {"$map": [["a", 1], ["a", 2]]}
    return v


def list_key_map(codec, m):
    """A map with a list key: no Python dict can hold it, so the bytes are assembled by hand
    from the library's encodings of the key and the value."""
    if codec in ("json", "serpent"):
        return {"encode_error": "Unsupported", "source": "hand",
                "note": "a list cannot be a JSON key or a Python dict key; refused"}
    (k, v), = m.pairs
    if codec == "msgpack":
        data = b"\x81" + msgpack.packb(k) + msgpack.packb(v)
        src = "hand: msgpack fixmap 0x81 + packb(key) + packb(value)"
    elif codec == "cbor":
        data = b"\xa1" + cbor2.dumps(k) + cbor2.dumps(v)
        src = "hand: RFC 8949 map head 0xa1 + cbor2 items"
    else:
        fields = BUILDERS[codec]("", "", {})
        varint = bincode_varint_u if codec == "bincode" else leb128

        def signed(n, bits):
            return varint(zigzag(n, bits))
        data = varint(1) + serde_encode(k, varint, signed) + serde_encode(v, varint, signed)
        fields["hex"] = data.hex()
        return fields
    return {"hex": data.hex(), "source": src, "note": "any Value may be a map key in this format"}


def main():
    os.makedirs(OUT, exist_ok=True)
    for codec, build in BUILDERS.items():
        vectors = []
        for name, text in CASES:
            obj = obj_of(text)
            if isinstance(obj, ListKeyMap):
                fields = list_key_map(codec, obj)
            elif codec == "serpent" and contains(obj, lambda x: isinstance(x, dict) and any(k is None for k in x)):
                fields = {"encode_error": "Unsupported", "source": "python serpent.dumps raises TypeError",
                          "note": "a None dict key is refused, as Python's serpent refuses it"}
            else:
                fields = build(name, text, obj)
            vec = {"name": name, "value": json.loads(text)}
            vec.update(fields)
            vectors.append(vec)
        for extra in EXTRA.get(codec, []):
            vectors.append(fix_extra(dict(extra)))
        doc = {
            "codec": codec,
            "description": DESCRIPTIONS[codec],
            "generator": "conformance/python/gen_golden.py with Python %s, serpent %s, msgpack %s, cbor2 %s" % (
                sys.version.split()[0], serpent.__version__, ".".join(map(str, msgpack.version)),
                __import__("importlib.metadata").metadata.version("cbor2")),
            "vectors": vectors,
        }
        path = os.path.join(OUT, codec + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write("{\n")
            f.write('  "codec": %s,\n' % json.dumps(doc["codec"]))
            f.write('  "description": %s,\n' % json.dumps(doc["description"], ensure_ascii=False))
            f.write('  "generator": %s,\n' % json.dumps(doc["generator"]))
            f.write('  "vectors": [\n')
            f.write(",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in vectors))
            f.write("\n  ]\n}\n")
        print("%s: %d vectors -> %s" % (codec, len(vectors), os.path.relpath(path)))
    path = os.path.join(OUT, "ron.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write('{\n  "codec": "ron",\n')
        f.write('  "description": "wirecall ron (ron 0.12, compact): hand-written vectors checked against the RON '
                'grammar (docs/grammar.md of ron 0.12.2); no Python implementation exists",\n')
        f.write('  "generator": "conformance/python/gen_golden.py (RON_VECTORS, written by hand)",\n')
        f.write('  "vectors": [\n')
        f.write(",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in ron_vectors()))
        f.write("\n  ]\n}\n")
    print("ron: %d vectors -> %s" % (len(ron_vectors()), os.path.relpath(path)))


if __name__ == "__main__":
    main()
