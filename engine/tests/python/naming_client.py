"""Python Pyro5 against the wirecall name server (run by engine/tests/naming_pyro5.rs).

Usage: naming_client.py NS_PORT SCENARIO [SERIALIZER]

Scenarios use Pyro5's public API only (locate_ns, the name server proxy, Proxy with
PYRONAME: and PYROMETA: URIs, Pyro5.errors) and print one line per check passed; any
failure raises, so the exit status is non-zero.
"""

import sys

import Pyro5.api
import Pyro5.core
import Pyro5.errors

port = int(sys.argv[1])
scenario = sys.argv[2]
Pyro5.config.SERIALIZER = sys.argv[3] if len(sys.argv) > 3 else "serpent"
Pyro5.config.COMMTIMEOUT = 10.0  # bounded: no call waits longer


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok", what)


def raises(exc, text, f, *args, **kwargs):
    try:
        f(*args, **kwargs)
    except exc as e:
        if text not in str(e):
            raise AssertionError("%r does not say %r" % (e, text))
        return True
    raise AssertionError("no %s from %s" % (exc.__name__, f))


CALC = "PYRO:test.calc@127.0.0.1:47311"
ECHO = "PYRO:test.echo@127.0.0.1:47312"
OWN = "PYRO:Pyro.NameServer@127.0.0.1:%d" % port

if scenario == "ns":
    ns = Pyro5.api.locate_ns("127.0.0.1", port)
    check(ns.ping() is None, "locate_ns found it; ping")
    check(ns.count() == 1, "count includes its own entry")
    own = ns.lookup("Pyro.NameServer")
    check(isinstance(own, Pyro5.core.URI) and str(own) == OWN, "lookup gives a URI object")
    ns.register("example.calc", CALC, safe=True, metadata={"tag1", "tag2"})
    check(
        raises(Pyro5.errors.NamingError, "name already registered: example.calc",
               ns.register, "example.calc", ECHO, safe=True),
        "safe mode refuses to overwrite")
    ns.register("example.echo", Pyro5.core.URI(ECHO), metadata=["tag2"])
    ns.register("other.thing", "PYRO:x@127.0.0.1:1")
    check(ns.count() == 4, "count after registering")
    check(str(ns.lookup("example.calc")) == CALC, "lookup")
    uri, meta = ns.lookup("example.calc", return_metadata=True)
    check(str(uri) == CALC and set(meta) == {"tag1", "tag2"}, "lookup with metadata")
    check(raises(Pyro5.errors.NamingError, "unknown name: nope", ns.lookup, "nope"),
          "unknown name is a NamingError")
    check(ns.list() == {"Pyro.NameServer": OWN, "example.calc": CALC, "example.echo": ECHO,
                        "other.thing": "PYRO:x@127.0.0.1:1"}, "list")
    check(sorted(ns.list(prefix="example.")) == ["example.calc", "example.echo"], "list by prefix")
    found = ns.list(regex=r"ex.*\.calc", return_metadata=True)
    check(list(found) == ["example.calc"] and found["example.calc"][0] == CALC
          and set(found["example.calc"][1]) == {"tag1", "tag2"}, "list by regex with metadata")
    check(raises(Pyro5.errors.NamingError, "invalid regex", ns.list, regex="ex("),
          "a bad regex is a NamingError")
    check(raises(ValueError, "one thing at a time", ns.list, prefix="a", regex="b"),
          "prefix and regex together is a ValueError")
    found = ns.yplookup(meta_all=["tag1"])
    check(list(found) == ["example.calc"] and set(found["example.calc"][1]) == {"tag1", "tag2"},
          "yplookup meta_all")
    check(ns.yplookup(meta_any=["tag2", "zzz"], return_metadata=False)
          == {"example.calc": CALC, "example.echo": ECHO}, "yplookup meta_any")
    check(ns.yplookup() == {}, "yplookup without tags")
    ns.set_metadata("example.echo", ["tag3"])
    check(set(ns.lookup("example.echo", return_metadata=True)[1]) == {"tag3"}, "set_metadata")
    check(raises(Pyro5.errors.NamingError, "unknown name", ns.set_metadata, "nope", ["x"]),
          "set_metadata of an unknown name")
    check(raises(TypeError, "", ns.register, "bad", 42), "registering a number is a TypeError")
    check(raises(Pyro5.errors.NamingError, "invalid name", ns.register, "bad name", CALC),
          "a name with a space is refused")
    check(ns.remove("example.calc") == 1, "remove by name")
    check(ns.remove(prefix="nothing.") == 0, "remove by prefix, nothing")
    check(ns.remove(regex="Pyro.*") == 0, "never removes its own entry")
    check(ns.remove(regex="other\\..*") == 1, "remove by regex")
    check(ns.remove(prefix="example.") == 1, "remove by prefix")
    check(ns.count() == 1, "count at the end")

elif scenario == "call":
    where = "@127.0.0.1:%d" % port
    with Pyro5.api.Proxy("PYRONAME:example.greeting" + where) as p:
        check(p.hello("Py") == "wirecall: hello Py", "PYRONAME proxy calls a wirecall provider")
    with Pyro5.api.Proxy("PYROMETA:kind.greeter" + where) as p:
        check(p.hello("Meta") == "wirecall: hello Meta", "PYROMETA proxy calls it")
    with Pyro5.api.Proxy("PYRONAME:no.such.name" + where) as p:
        check(raises(Pyro5.errors.NamingError, "unknown name", lambda: p.hello("x")),
              "an unknown PYRONAME is a NamingError")
    # A name registered from Python, looked up by the test's Rust side afterwards.
    ns = Pyro5.api.locate_ns("127.0.0.1", port)
    ns.register("from.python", ns.lookup("example.greeting"), metadata=["py"])
    check(str(ns.lookup("from.python")) == str(ns.lookup("example.greeting")),
          "register a URI object")

else:
    raise SystemExit("unknown scenario " + scenario)
