"""A plain Pyro5 daemon serving one Python object (run by engine/tests/pyro5_client.rs).

Usage: pyro_daemon.py PORT          serve on 127.0.0.1:PORT (0: any free port)
       pyro_daemon.py unix PATH     serve on the unix socket PATH

Registers a `Calc` under the object id `test.calc`, prints its URI on one line, and serves
until killed. Only Pyro5's public API is used; Pyro5 reads its settings from `PYRO_*`
environment variables (`PYRO_COMPRESSION=true` makes it compress its answers).
"""

import sys
import threading
import time

import Pyro5.api


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class Temperature:
    """No converter registered: Pyro5 sends vars() with `__class__`."""

    def __init__(self, celsius):
        self.celsius = celsius


# Custom classes through Pyro5's public hooks (a wirecall struct tagged `mymod.Point`).
Pyro5.api.register_class_to_dict(Point, lambda p: {"__class__": "mymod.Point", "x": p.x, "y": p.y})
Pyro5.api.register_dict_to_class("mymod.Point", lambda name, d: Point(d["x"], d["y"]))


@Pyro5.api.expose
class Calc:
    def __init__(self):
        self._value = 7
        self._fired = []
        self._closed = 0
        self._lock = threading.Lock()

    def echo(self, x):
        return x

    def add(self, a, b):
        return a + b

    def describe(self, name, scale=1.0, *, tags=()):
        return {
            "name": name,
            "length": len(name),
            "scaled": [1.5 * scale, 2 * scale],
            "tags": sorted(tags),
        }

    def slow(self, seconds):
        time.sleep(seconds)
        return seconds

    def fail(self, message):
        raise ValueError(message)

    @Pyro5.api.oneway
    def fire(self, n):
        with self._lock:
            self._fired.append(n)

    def fired(self):
        with self._lock:
            return list(self._fired)

    def count(self, n):
        """A generator: streamed item by item (ITEMSTREAMRESULT)."""
        try:
            for i in range(n):
                yield i
        finally:
            # Runs when the iterator ends or is closed (close_stream drops it).
            with self._lock:
                self._closed += 1

    def translate(self, p, dx, dy):
        if not isinstance(p, Point):
            raise TypeError("not a Point: %r" % (p,))
        return Point(p.x + dx, p.y + dy)

    def weather(self, celsius):
        # One instance: Pyro5's marshal serializer converts only the top-level object.
        return Temperature(celsius)

    def make_error(self, message):
        return KeyError(message)

    def streams_closed(self):
        with self._lock:
            return self._closed

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        self._value = v


def main():
    if sys.argv[1] == "unix":
        daemon = Pyro5.api.Daemon(unixsocket=sys.argv[2])
    else:
        daemon = Pyro5.api.Daemon(host="127.0.0.1", port=int(sys.argv[1]))
    uri = daemon.register(Calc(), "test.calc")
    print(uri, flush=True)
    daemon.requestLoop()


if __name__ == "__main__":
    main()
