"""Python Pyro5 clients of the seed examples' providers (run by engine/tests/pyro5_seeds.rs).

Usage: pyro_seeds.py PORT SERIALIZER

The server serves the providers of engine/examples/pymargo_provider.rs (object id
`my_service`), rpyc_service.rs (`counter`, one instance per connection) and pyro_proxy.rs
(`thermostat`) under their default object ids (the service names). Only Pyro5's public API
is used; every check prints one `ok` line and any failure raises.
"""

import sys

import Pyro5.api
import Pyro5.errors

Pyro5.config.COMMTIMEOUT = 10.0

port = int(sys.argv[1])
serializer = sys.argv[2]


def proxy(obj):
    p = Pyro5.api.Proxy("PYRO:%s@127.0.0.1:%d" % (obj, port))
    p._pyroSerializer = serializer
    p._pyroTimeout = 10.0
    return p


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok", what)


# The PyMargo seed: RPC names of `my_service`, keyword arguments, a Result error, a oneway
# notification, an answer from another task.
with proxy("my_service") as m:
    check(m.say_hello("Matthieu", lastname="Dorier") == "Hello Matthieu Dorier",
          "margo: say_hello with a keyword argument")
    check(m.add(2, 40) == 42, "margo: add")
    try:
        m.add(2 ** 63 - 1, 1)
        raise AssertionError("an overflowing add did not raise")
    except RuntimeError as e:
        check("overflows i64" in str(e), "margo: the handler's Err raises RuntimeError: %s" % e)
    check("notify" in m._pyroOneway, "margo: notify is oneway in the metadata")
    m.notify("from python " + serializer)
    check(m.later(21) == 42, "margo: a deferred answer (Responder)")
    check("from python " + serializer in m.events(), "margo: the oneway notification arrived")

# The RPyC seed: exposed members only, an attribute, one instance per connection.
with proxy("counter") as c:
    check(c.increment(2) == 2 and c.increment(3) == 5, "rpyc: increment")
    if serializer != "marshal":
        # (Pyro5's marshal serializer cannot send attribute access: a client-side bug.)
        check(c.value == 5, "rpyc: the exposed attribute reads")
        c.value = 10
        check(c.increment(1) == 11, "rpyc: the exposed attribute writes")
    try:
        c.reset()
        raise AssertionError("a member that is not exposed was called")
    except AttributeError:
        check(True, "rpyc: reset is not exposed")
    with proxy("counter") as other:
        check(other.increment(1) == 1, "rpyc: another connection has its own instance")

# The Pyro seed: the thermostat, and a per-proxy timeout.
with proxy("thermostat") as t:
    check(t.convert(100.0) == 212.0, "pyro: convert")
    t._pyroTimeout = 0.2
    try:
        t.slow(2000)
        raise AssertionError("the slow call did not time out")
    except Pyro5.errors.TimeoutError:
        check(True, "pyro: a call past the proxy's timeout raises TimeoutError")
with proxy("thermostat") as t:
    check(t.slow(10) == 10, "pyro: a new proxy calls on")
