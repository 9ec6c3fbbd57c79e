"""cbor2's reading of CBOR items: the independent expected values of the cbor-wg runner
(src/suites/cbor.rs).

usage: cbor_oracle.py
Each stdin line is the hex of one CBOR item. Each output line is, for that item:
  the value cbor2.loads gives, in the vector notation (../NOTATION.md);
  "?<what>" when it holds something the notation (and wirecall's Value) has no form for: a
           tag other than 2/3 (bignums), 258 (set) and 55799 (self-describe), `undefined`, or
           an unassigned simple value;
  "!<error>" when cbor2 rejects it.
The first output line is "ok cbor2 <version>" once cbor2 is imported.

CBOR has no tuples: cbor2 hands out map keys and set elements as tuples and frozen mappings (it
needs them hashable); they are written as the arrays and maps they were on the wire.
"""

import collections.abc
import importlib.metadata
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import notation  # noqa: E402


class Unrepresentable(Exception):
    pass


def dumps(v, cbor2):
    if isinstance(v, cbor2.CBORTag):
        raise Unrepresentable("tag %d" % v.tag)
    if v is cbor2.undefined:
        raise Unrepresentable("undefined")
    if isinstance(v, cbor2.CBORSimpleValue):
        raise Unrepresentable("simple(%d)" % v.value)
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return notation.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(dumps(x, cbor2) for x in v) + "]"
    if isinstance(v, (set, frozenset)):
        return '{"$set":[' + ",".join(dumps(x, cbor2) for x in v) + "]}"
    if isinstance(v, collections.abc.Mapping):
        items = list(v.items())
        keys = [k for k, _ in items]
        if all(isinstance(k, str) for k in keys) and not (len(keys) == 1 and keys[0].startswith("$")):
            return "{" + ",".join(notation.dumps(k) + ":" + dumps(x, cbor2) for k, x in items) + "}"
        return '{"$map":[' + ",".join("[" + dumps(k, cbor2) + "," + dumps(x, cbor2) + "]" for k, x in items) + "]}"
    # Any other type comes from one of cbor2's semantic tags (0/1 date-times, 4/5 decimals,
    # 30 rationals, 37 UUIDs, ...).
    raise Unrepresentable("a semantic tag (cbor2 reads it as %s)" % type(v).__name__)


def read_one(data, cbor2):
    """The output line for one item."""
    # As deep as the runner reads (the cbor-wg `good` file nests about 500 levels).
    # Duplicate keys are refused: a dict would keep only the last one. Python also calls
    # 0, 0.0 and False the same key, so a map holding them is read again with duplicates
    # allowed only to find what else it holds; its merged dict is never an expected value.
    try:
        value = cbor2.loads(data, max_depth=4096, allow_duplicate_keys=False)
        merged = None
    except Exception as e:  # report per item, keep going
        merged = "!%s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        try:
            value = cbor2.loads(data, max_depth=4096, allow_duplicate_keys=True)
        except Exception:
            return merged
    try:
        text = dumps(value, cbor2)
    except Unrepresentable as e:
        return "?%s" % e
    return text if merged is None else merged


def main():
    sys.setrecursionlimit(20000)
    try:
        import cbor2
    except ImportError as e:
        print("missing %s" % e, flush=True)
        return
    out = sys.stdout
    out.write("ok cbor2 %s\n" % importlib.metadata.version("cbor2"))
    for line in sys.stdin:
        out.write(read_one(bytes.fromhex(line.strip()), cbor2) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
