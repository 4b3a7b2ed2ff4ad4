"""What a load-client process needs to post to the gateway: keep-alive mTLS connections and a closed loop
that keeps each of them busy. Standard library only, so a client process costs the machine little besides
TLS and HTTP.

Each request is a path and a body; every connection has its own thread and takes the next request when
its previous one is answered (a closed loop: at most one request in flight per connection).
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass


class Connection:
    """One keep-alive HTTPS connection with a client certificate, reopened after a failure."""

    def __init__(self, *, port: int, cafile: str, cert: str, key: str, host: str = "127.0.0.1",
                 timeout: float = 60.0, context: ssl.SSLContext | None = None) -> None:
        """``context``: an SSL context already made for the same ``cafile``, ``cert`` and ``key`` (shared)."""
        if context is None:
            context = ssl.create_default_context(cafile=cafile)
            context.load_cert_chain(cert, key)
        self.context = context
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPSConnection | None = None
        self.connects = 0
        self.retry_after: str | None = None  # the last answer's Retry-After header (a 429 or 503 says when)

    def post(self, path: str, body: bytes, content_type: str = "application/xml") -> tuple[int, bytes]:
        """(status, answer body), or (0, why) when the connection failed (it is reopened for the next)."""
        return self.request("POST", path, body, {"Content-Type": content_type})

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path, None, {})

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        try:
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                        timeout=self.timeout)
                self.connects += 1
            self.conn.request(method, path, body=body, headers=headers)
            reply = self.conn.getresponse()
            answer = reply.read()
            self.retry_after = reply.getheader("Retry-After")
            if reply.getheader("Connection", "").lower() == "close":
                self.close()
            return reply.status, answer
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 0, repr(exc).encode()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass(frozen=True)
class Outcome:
    index: int
    sent: float
    answered: float
    status: int
    answer: bytes
    """The answer body when the status was not the expected one (for the report), else empty."""

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


def post_in_turn(connections: list[Connection], requests: list[tuple[str, bytes]],
                 expect: int = 202) -> list[Outcome]:
    """One request at a time, connection after connection: opens every connection and warms the gateway."""
    outcomes = []
    for index, (path, body) in enumerate(requests):
        sent = time.perf_counter()
        status, answer = connections[index % len(connections)].post(path, body)
        outcomes.append(Outcome(index, sent, time.perf_counter(), status, b"" if status == expect else answer))
    return outcomes


def post_concurrently(connections: list[Connection], requests: list[tuple[str, bytes]],
                      expect: int = 202) -> list[Outcome]:
    """Every request once, each connection in its own thread taking the next one as soon as it is free."""
    lock = threading.Lock()
    next_index = iter(range(len(requests)))
    outcomes: list[Outcome] = []

    def worker(connection: Connection) -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            path, body = requests[index]
            sent = time.perf_counter()
            status, answer = connection.post(path, body)
            answered = time.perf_counter()
            with lock:
                outcomes.append(Outcome(index, sent, answered, status, b"" if status == expect else answer))

    threads = [threading.Thread(target=worker, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes, key=lambda o: o.index)


def by_status(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[str(outcome.status)] = counts.get(str(outcome.status), 0) + 1
    return dict(sorted(counts.items()))


def wall_seconds(outcomes: list[Outcome]) -> float:
    """From the first request sent to the last answer."""
    return max(o.answered for o in outcomes) - min(o.sent for o in outcomes) if outcomes else 0.0

