"""An unmodified Pyro5 client against a wirecall server (run by engine/tests/pyro5.rs).

Usage: pyro_client.py PORT SCENARIO [SERIALIZER]

Every scenario uses Pyro5's public API (Proxy, its _pyro* settings, Pyro5.errors) and
prints one line per check passed; any failure raises, so the exit status is non-zero.
"""

import sys

import Pyro5.api
import Pyro5.errors

Pyro5.config.COMMTIMEOUT = 10.0  # bounded: no call waits longer

port = int(sys.argv[1])
scenario = sys.argv[2]
serializer = sys.argv[3] if len(sys.argv) > 3 else "serpent"


def proxy(obj="example.greeting"):
    p = Pyro5.api.Proxy("PYRO:%s@127.0.0.1:%d" % (obj, port))
    p._pyroSerializer = serializer
    p._pyroTimeout = 10.0
    return p


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok", what)


if scenario == "call":
    with proxy() as p:
        check(p.hello("Pyro") == "Hello, Pyro!", "positional call")
        check(p.add(2, 40) == 42, "two int arguments")
        check(p.add(a=1, b=2) == 3, "keyword arguments")
        check(p.add(5, b=6) == 11, "mixed arguments")
        check(list(p.squares(4)) == [0, 1, 4, 9], "a list result")
        check(p.hello("héllo ✓") == "Hello, héllo ✓!", "non-ASCII text")
elif scenario == "metadata":
    with proxy() as p:
        p._pyroBind()
        check({"hello", "add", "squares", "fail", "parse", "notify", "notified"} <= p._pyroMethods,
              "metadata lists the methods: %s" % sorted(p._pyroMethods))
        check(p._pyroOneway == {"notify"}, "metadata lists the oneway method")
    with proxy("Pyro.Daemon") as d:
        check(d.ping() is None, "Pyro.Daemon.ping")
        check("example.greeting" in d.registered() and "Pyro.Daemon" in d.registered(),
              "Pyro.Daemon.registered: %s" % d.registered())
        meta = d.get_metadata("example.greeting")
        check("hello" in meta["methods"] and list(meta["oneway"]) == ["notify"],
              "Pyro.Daemon.get_metadata")
elif scenario == "oneway":
    with proxy() as p:
        before = p.notified()
        check(p.notify(5) is None, "a oneway call returns None at once")
        check(p.notify(7) is None, "a second oneway call")
        # The oneway calls ran on the server (the next call on the connection is answered
        # after them; give a concurrent run a moment).
        import time
        deadline = time.time() + 5
        while p.notified() != before + 12 and time.time() < deadline:
            time.sleep(0.02)
        check(p.notified() == before + 12, "the oneway calls ran")
elif scenario == "errors":
    with proxy() as p:
        try:
            p.fail("the disk is on fire")
            raise AssertionError("fail() did not raise")
        except RuntimeError as e:
            check("the disk is on fire" in str(e), "a failing method raises RuntimeError with its message")
            tb = "".join(Pyro5.errors.get_pyro_traceback())
            check("caused by: root cause" in tb, "the remote traceback carries the Rust error chain")
        try:
            p.parse("forty-two")
            raise AssertionError("parse() did not raise")
        except ValueError as e:
            check("invalid digit" in str(e), "a Rust parse error raises ValueError: %s" % e)
        try:
            p.add("x", 1)
            raise AssertionError("add('x', 1) did not raise")
        except TypeError as e:
            check(True, "bad arguments raise TypeError: %s" % e)
        try:
            p.nosuch()
            raise AssertionError("nosuch() did not raise")
        except AttributeError as e:
            check(True, "an unknown method raises AttributeError (client side)")
        # Past the client's own check: the server answers an unknown method itself.
        p._pyroMethods.add("nosuch")
        try:
            p.nosuch()
            raise AssertionError("nosuch() did not raise")
        except AttributeError as e:
            check("no exposed method" in str(e), "an unknown method raises AttributeError (server side): %s" % e)
        check(p.add(1, 1) == 2, "the connection serves on after errors")
    try:
        with proxy("no.such.object") as p:
            p._pyroBind()
        raise AssertionError("an unknown object was bound")
    except Pyro5.errors.CommunicationError as e:
        check("unknown object" in str(e), "an unknown object is refused: %s" % e)
elif scenario == "batch":
    # Pyro5.api.BatchProxy: one <batch> request, results in order, stop at the first error.
    with proxy() as p:
        b = Pyro5.api.BatchProxy(p)
        b.add(1, 2)
        b.hello("batch")
        b.squares(3)
        b.add(a=20, b=22)
        check(list(b()) == [3, "Hello, batch!", [0, 1, 4], 42], "a batch's results in order")
        b = Pyro5.api.BatchProxy(p)
        b.add(2, 2)
        b.fail("third time unlucky")
        b.add(3, 3)
        results = b()
        check(next(results) == 4, "the result before the failing call")
        try:
            next(results)
            raise AssertionError("the failing call of a batch did not raise")
        except RuntimeError as e:
            check("third time unlucky" in str(e), "the failing call raises its exception: %s" % e)
        try:
            next(results)
            raise AssertionError("a call after the failing one gave a result")
        except StopIteration:
            check(True, "the calls after the failing one did not run")
        before = p.notified()
        b = Pyro5.api.BatchProxy(p)
        b.notify(3)
        b.add(1, 1)
        b.notify(4)
        check(b(oneway=True) is None, "a oneway batch returns None at once")
        import time
        deadline = time.time() + 5
        while p.notified() != before + 7 and time.time() < deadline:
            time.sleep(0.02)
        check(p.notified() == before + 7, "the oneway batch ran")
        # A method the object does not have fails the whole batch, as in a Pyro5 daemon.
        p._pyroMethods.add("nosuch")
        b = Pyro5.api.BatchProxy(p)
        b.add(1, 1)
        b.nosuch()
        try:
            list(b())
            raise AssertionError("a batch with an unknown method did not raise")
        except AttributeError as e:
            check("nosuch" in str(e), "an unknown method fails the whole batch: %s" % e)
        check(p.add(1, 1) == 2, "the connection serves on after the batches")
elif scenario == "compression":
    # Pyro5's COMPRESSION setting: requests of 100 bytes or more go zlib-compressed, and
    # so do the server's answers to them.
    Pyro5.config.COMPRESSION = True
    with proxy() as p:
        long_name = "compressible " * 40
        check(p.hello(long_name) == "Hello, %s!" % long_name, "a compressed call and answer")
        check(p.add(1, 2) == 3, "a short call (sent uncompressed)")
        check(list(p.squares(200))[-1] == 199 * 199, "a long result to a short call")
        try:
            p.fail("compressed " * 20)
            raise AssertionError("fail() did not raise")
        except RuntimeError as e:
            check("compressed compressed" in str(e), "a compressed exception")
elif scenario == "streams":
    # A provider method returning a stream is a remote iterator, read item by item; a
    # method returning a list gives a plain result; the daemon object answers the stream
    # methods for unknown ids as a Pyro5 daemon does.
    with proxy() as p:
        it = p.countdown(5)
        check(not isinstance(it, (list, tuple)) and next(it) == 5,
              "a stream result is an iterator, read item by item")
        check(list(it) == [4, 3, 2, 1], "the rest of the items, then the end")
        seen = []
        try:
            for x in p.breaks_after(2):
                seen.append(x)
            raise AssertionError("the broken stream ended without an error")
        except Exception as e:
            check(seen == [0, 1] and "item 2 broke" in str(e),
                  "an error item raises after the good ones: %r %s" % (seen, e))
        endless = p.naturals()
        check([next(endless) for _ in range(3)] == [0, 1, 2], "an endless stream, item by item")
        endless.close()
        check(p.add(2, 3) == 5, "the connection serves on after a closed stream")
        check(p.squares(3) == [0, 1, 4], "a list result is a plain result, not a stream")
        # ITER_STREAM_LINGER: a remote iterator outlives its connection. The proxy opens a
        # new connection (as after a network failure) and the iterator goes on there.
        it = p.countdown(4)
        check(next(it) == 4, "a remote iterator read on its first connection")
        p._pyroReconnect()
        check(list(it) == [3, 2, 1], "the same iterator read on a new connection (linger)")
    with proxy("Pyro.Daemon") as d:
        try:
            d.get_next_stream_item("no-such-stream")
            raise AssertionError("an unknown stream gave an item")
        except Pyro5.errors.PyroError as e:
            check("item stream terminated" in str(e), "get_next_stream_item of an unknown id: %s" % e)
        check(d.close_stream("no-such-stream") is None, "close_stream of an unknown id returns None")
        check(d.ping() is None, "the daemon object serves on")
elif scenario == "classes":
    # Custom classes through Pyro5's public hooks: a Point travels as
    # {"__class__": "mymod.Point", "x": .., "y": ..}, which wirecall's `Point` (a serde
    # struct tagged with its Pyro class name) reads and writes.
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    Pyro5.api.register_class_to_dict(
        Point, lambda p: {"__class__": "mymod.Point", "x": p.x, "y": p.y})
    Pyro5.api.register_dict_to_class("mymod.Point", lambda name, d: Point(d["x"], d["y"]))
    with proxy("example.geometry") as p:
        r = p.translate(Point(1, 2), 10, 20)
        check(isinstance(r, Point) and (r.x, r.y) == (11, 22),
              "a Point argument and a Point result (rebuilt by register_dict_to_class)")
        r = p.translate(p=Point(-5, 5), dx=5, dy=-5)
        check((r.x, r.y) == (0, 0), "a Point as a keyword argument")
        if serializer != "marshal":
            # Pyro5's marshal serializer converts only top-level arguments to class dicts.
            many = p.farthest([Point(1, 1), Point(-7, 2), Point(3, 3)])
            check(isinstance(many, Point) and (many.x, many.y) == (-7, 2), "a list of Points")
        check(p.inspect(Point(3, 4)) == "mymod.Point{x=3,y=4}",
              "a Point as a dynamic value (a class dict)")
        check(p.inspect(ValueError("bad value", 7)) == "builtins.ValueError('bad value', 7)",
              "a Python exception instance as a class dict")
        check(p.error_class(KeyError("k", 1, 2)) == "builtins.KeyError with 3 args",
              "a Python exception instance as a Rust struct")

        class Temperature:  # no converter registered: Pyro5 sends vars() with __class__
            def __init__(self, celsius):
                self.celsius = celsius

        check(p.hotter(Temperature(20.5), Temperature(25.0)) == 25.0,
              "Python instances converted by the server's registry (PyroClasses)")
        # A strict reading (an enum tagged by class): the class is checked.
        check(p.area(Point(1, 2)) == 0.0 and abs(p.area({"__class__": "mymod.Circle", "r": 2.0}) - 12.566) < 0.001,
              "classes told apart by __class__")
        for bad, why in (({"x": 1, "y": 2}, "__class__"), ({"__class__": "mymod.Line"}, "mymod.Line")):
            try:
                p.area(bad)
                raise AssertionError("%r was taken as a shape" % bad)
            except TypeError as e:
                check(why in str(e), "a dict of no or another class is refused: %s" % e)
elif scenario == "refused":
    try:
        with proxy() as p:
            p.hello("x")
        raise AssertionError("a refused serializer was served")
    except Pyro5.errors.CommunicationError as e:
        check("refused" in str(e) and "accepts" in str(e),
              "a refused serializer is reported: %s" % e)
else:
    raise SystemExit("unknown scenario " + scenario)
