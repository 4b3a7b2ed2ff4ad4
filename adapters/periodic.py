"""Blocking work the gateway repeats on a timer (treasury sweeps, queue metrics): in the thread pool, never on
the reactor, one run at a time, and a failure logged rather than ending the timer."""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger


def every(seconds: float, work: Callable[[], object], *, log: Logger, what: str) -> None:
    """Run ``work`` now and every ``seconds`` in the thread pool; LoopingCall waits for each run to end, so
    runs never overlap. A run that raises is logged as ``{what} failed`` and the next one comes as usual."""
    from twisted.internet.task import LoopingCall
    from twisted.internet.threads import deferToThread

    def run():
        d = deferToThread(work)
        d.addErrback(lambda failure: log.failure("{what} failed", failure, what=what))
        return d

    LoopingCall(run).start(seconds, now=True)
