"""Python side of wirecall's cross-check (conformance/tests/python_interop.rs).

usage: interop.py CODEC DIRECTION
  CODEC      json | msgpack | cbor | serpent
  DIRECTION  decode: each stdin line is hex of bytes wirecall encoded; print the decoded
                     value in the vector notation
             encode: each stdin line is a value in the notation; print hex of the bytes the
                     Python reference library writes for it
One output line per input line; a line starting with "!" reports an error for that item.
The first output line is "ok <module> <version>" once the module is imported.

Library settings are the ones wirecall's codecs document as their Python counterpart:
json.dumps(ensure_ascii=False, separators=(",", ":")) / json.loads (NaN and Infinity tokens on,
as wirecall's json reads and writes them),
msgpack.packb(use_bin_type=True) / msgpack.unpackb(raw=False, strict_map_key=False),
cbor2.dumps() / cbor2.loads(), serpent.dumps() / serpent.loads(), with serpent's
{'data': ..., 'encoding': 'base64'} dicts turned back into bytes (serpent.tobytes), as Pyro
does.
"""

import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import notation  # noqa: E402


def _serpent_bytes(v):
    import serpent

    if isinstance(v, dict):
        if set(v.keys()) == {"data", "encoding"} and v.get("encoding") == "base64":
            return serpent.tobytes(v)
        return {_serpent_bytes(k): _serpent_bytes(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_serpent_bytes(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_serpent_bytes(x) for x in v)
    return v


def codec_functions(name):
    if name == "json":
        import json

        def enc(v):
            return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

        return "json", "stdlib", enc, lambda b: json.loads(b.decode("utf-8"))
    if name == "msgpack":
        import msgpack

        return (
            "msgpack",
            ".".join(map(str, msgpack.version)),
            lambda v: msgpack.packb(v, use_bin_type=True),
            lambda b: msgpack.unpackb(b, raw=False, strict_map_key=False),
        )
    if name == "cbor":
        import cbor2

        import importlib.metadata

        version = importlib.metadata.version("cbor2")
        return "cbor2", version, cbor2.dumps, cbor2.loads
    if name == "serpent":
        import serpent

        return (
            "serpent",
            serpent.__version__,
            lambda v: serpent.dumps(v),
            lambda b: _serpent_bytes(serpent.loads(b)),
        )
    raise SystemExit("unknown codec %r" % name)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("encode", "decode"):
        raise SystemExit(__doc__)
    try:
        module, version, enc, dec = codec_functions(sys.argv[1])
    except ImportError as e:
        print("missing %s" % e, flush=True)
        return
    out = sys.stdout
    out.write("ok %s %s\n" % (module, version))
    for line in sys.stdin:
        line = line.rstrip("\n")
        try:
            if sys.argv[2] == "decode":
                result = notation.dumps(dec(bytes.fromhex(line)))
            else:
                result = enc(notation.parse(line)).hex()
        except Exception as e:  # report per item, keep going
            result = "!%s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        out.write(result + "\n")
    out.flush()


if __name__ == "__main__":
    main()
