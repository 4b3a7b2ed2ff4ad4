"""One pika ``BlockingConnection`` served by a thread of its own, that reconnects after the broker goes away.

The AMQP intake (consuming) and the event publisher (publishing) both need the same life cycle, so it lives
here once: connect at start (an error surfaces to the caller), serve in a daemon thread, and when the
connection drops — pika raises out of ``process_data_events`` or out of a publish — close what is left,
wait by :class:`Backoff`, connect again (declaring the topology again) and go on; one structured log line
per attempt (``{prefix}.reconnect``: its number, the wait before it, its outcome). ``connected`` says
whether the thread is serving right now. ``stop`` only sets an event and wakes the loop with pika's one
thread-safe call, because a ``BlockingConnection`` must only be used from the thread that owns it.

A subclass says what a connection is for: :meth:`_open` (declare, set up channels, start consuming) and
:meth:`_serve` (work until ``_stopping`` is set); the hooks :meth:`_on_connected` / :meth:`_on_disconnected`
keep its metrics in step, and :meth:`_log_fields` names what it serves in every log line.
"""

from __future__ import annotations

import abc
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pika
import pika.exceptions
from twisted.logger import Logger

log = Logger(namespace="vgw.amqp")


@dataclass(frozen=True)
class Backoff:
    """The waits before reconnect attempts: ``first`` seconds, times ``factor`` after each failed attempt,
    never more than ``cap``; each wait drawn at random from the upper half of that bound.

    Why these numbers: a dropped TCP connection is back within a second, a broker restart takes about
    ten. Half a second catches the first; a cap of 5 s means work resumes at most ~5 s after the broker is
    back, while one refused connect every few seconds costs the broker nothing. The jitter keeps several
    gateway processes from knocking all at once when a broker comes back.
    """

    first: float = 0.5
    factor: float = 2.0
    cap: float = 5.0

    def delays(self, rand: Callable[[], float] = random.random) -> Iterator[float]:
        bound = min(self.first, self.cap)
        while True:
            yield bound * (0.5 + rand() / 2)
            bound = min(bound * self.factor, self.cap)


@dataclass
class Session:
    """One connection and the channel the thread works on; replaced whole on reconnect."""

    connection: pika.BlockingConnection
    channel: object


class AmqpThread(abc.ABC):
    what = "AMQP thread"
    """How log lines name this thread's job (e.g. "AMQP intake")."""
    prefix = "amqp"
    """The prefix of its structured log events: ``{prefix}.connect``, ``.disconnected``, ``.reconnect``."""

    def __init__(self, parameters: pika.connection.Parameters, backoff: Backoff) -> None:
        self.parameters = parameters
        self.backoff = backoff
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None

    # --- what a subclass says ---------------------------------------------------------------------------

    @abc.abstractmethod
    def _open(self, connection: pika.BlockingConnection) -> Session:
        """Set up a fresh connection (declare, channels, consume); raise if it cannot be."""

    @abc.abstractmethod
    def _serve(self, session: Session) -> None:
        """Work on ``session`` until ``_stopping`` is set; raise pika's errors when the connection drops."""

    def _on_connected(self) -> None:  # noqa: B027 - a hook a subclass may fill; nothing to do by default
        """Metrics to set once connected (before ``connected`` turns true)."""

    def _on_disconnected(self) -> None:  # noqa: B027 - a hook a subclass may fill; nothing to do by default
        """Metrics to set once disconnected (before ``connected`` turns false)."""

    def _log_fields(self) -> dict:
        """What this thread serves, for every log line (e.g. the queue or the exchange)."""
        return {}

    # --- life cycle -------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected and serving; False from the moment the thread notices a drop until it is
        serving again (read from any thread)."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect and serve in a thread of its own; raise if the first connect fails."""
        if self._thread is not None:
            raise RuntimeError(f"this {type(self).__name__} was already started")
        self._stopping.clear()
        session = self._connect()  # errors surface to the caller
        fields = self._log_fields()
        log.info("{what} connected", event=f"{self.prefix}.connect", what=self.what, **fields)
        self._thread = threading.Thread(target=self._run, args=(session,), daemon=True,
                                        name=f"{self.what}:{','.join(str(v) for v in fields.values())}")
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop: the work in hand finishes, then the connection closes. With the broker down the thread is
        waiting between reconnect attempts, and the same event ends that wait at once. Raises TimeoutError
        if the thread is still busy after ``timeout`` s (a daemon thread: it will not keep the process
        alive)."""
        self._stopping.set()
        with self._lock:
            connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(lambda: None)  # wakes the loop at once
            except pika.exceptions.AMQPError:
                pass  # closing or closed already: the loop is leaving anyway
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the {self.what} did not stop within {timeout} s")
            self._thread = None

    # --- the thread ---------------------------------------------------------------------------------------

    def _connect(self) -> Session:
        connection = pika.BlockingConnection(self.parameters)
        try:
            session = self._open(connection)
        except BaseException:
            close_quietly(connection)
            raise
        with self._lock:
            self._connection = connection
        self._on_connected()
        self._connected.set()  # last: whoever sees it set finds the metrics already saying so
        return session

    def _disconnect(self, session: Session) -> None:
        self._on_disconnected()
        self._connected.clear()  # last, as in _connect
        with self._lock:
            self._connection = None
        close_quietly(session.connection)

    def _run(self, session: Session | None) -> None:
        """Serve until stopped; on any failure close, reconnect, serve again."""
        while session is not None:
            try:
                self._serve(session)
                self._disconnect(session)
                return  # stop() was called
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warn("{what} lost its connection ({error}); reconnecting", event=f"{self.prefix}.disconnected",
                         what=self.what, error=repr(exc), **self._log_fields())
            except Exception:  # our bug: the work in hand is done again after the reconnect
                log.failure("{what} failed; reconnecting", event=f"{self.prefix}.disconnected", what=self.what,
                            **self._log_fields())
            self._disconnect(session)
            session = self._reconnect()

    def _reconnect(self) -> Session | None:
        """Connect again after each wait of ``backoff`` until it works (the new session) or stop() is
        called (None). One structured line per attempt: its number, the wait before it, its outcome."""
        for attempt, wait in enumerate(self.backoff.delays(), start=1):
            if self._stopping.wait(wait):
                return None
            fields = {"event": f"{self.prefix}.reconnect", "what": self.what, "attempt": attempt,
                      "waited_s": round(wait, 3), **self._log_fields()}
            try:
                session = self._connect()
            except (pika.exceptions.AMQPError, OSError) as exc:  # pika raises many types for "cannot connect"
                log.warn("{what} reconnect attempt {attempt} failed ({error})", outcome="failed", error=repr(exc),
                         **fields)
                continue
            except Exception:  # our bug; the thread must go on trying all the same
                log.failure("{what} reconnect attempt {attempt} failed", outcome="failed", **fields)
                continue
            log.info("{what} reconnect attempt {attempt} connected", outcome="connected", **fields)
            return session
        return None  # unreachable: the delays never end


def close_quietly(connection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except (pika.exceptions.AMQPError, OSError):
        pass
