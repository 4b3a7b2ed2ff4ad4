"""Twisted's global reactor running in a thread of its own, for tests that drive reactor-based adapters from
pytest's own (synchronous) thread.

The reactor can run only once per process, so the fixture is session-scoped: the first test that asks for
it starts the reactor in a daemon thread (without signal handlers, which belong to the main thread), and
the session's end stops it. A test never touches a reactor-based object from its own thread: it asks
:func:`call` to run a function in the reactor thread and waits for its result, or for its Deferred's, under
a deadline; :func:`eventually` polls a condition the same way.
"""

from __future__ import annotations

import threading
import time

import pytest
from twisted.internet import defer, threads


@pytest.fixture(scope="session")
def reactor_thread():
    """The global reactor, running in a daemon thread until the session ends."""
    from twisted.internet import reactor

    if reactor.running:  # started by someone else in this process
        yield reactor
        return
    started = threading.Event()
    reactor.callWhenRunning(started.set)
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True,
                              name="twisted-reactor")
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the reactor did not start within 10 s")
    yield reactor
    reactor.callFromThread(reactor.stop)
    thread.join(10)


def call(reactor, function, *args, timeout: float = 30.0, **kwargs):
    """Run ``function(*args, **kwargs)`` in the reactor thread and return its result (a Deferred's, once it
    fired); raise what it raised or failed with, or ``defer.TimeoutError`` after ``timeout`` s."""
    def run():
        d = defer.maybeDeferred(function, *args, **kwargs)
        d.addTimeout(timeout, reactor)
        return d
    return threads.blockingCallFromThread(reactor, run)


def eventually(reactor, condition, what: str, timeout: float = 20.0, interval: float = 0.02) -> None:
    """Poll ``condition()`` (run in the reactor thread) until it is true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not call(reactor, condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)
