"""The load side of ``vgw bench intake``: an agency system posting vouchers over keep-alive mTLS connections.

Runs as its own process (``python -m simulators.bench.intake_load_client SPEC.json``) so the client's CPU time is
not taken from the gateway's interpreter, only from the machine, as a real agency's would be. Standard
library only. Reads the bodies from one file (each a 4-byte big-endian length and the bytes), posts them
from ``concurrency`` threads, each with one keep-alive connection, and prints one JSON line: the count by
status, the wall time, latency percentiles and the client's own CPU time per request.

Paced runs (``rate``): request i is due at start + i/rate whether or not earlier ones have been answered
(an open loop, as independent agencies behave). Its latency is counted from when it was due, so a gateway
that falls behind shows it in p99 instead of hiding it by slowing the client ("coordinated omission");
``service_ms`` counts from when it was actually sent.
"""

from __future__ import annotations

import http.client
import json
import ssl
import statistics
import struct
import sys
import threading
import time
from collections import Counter
from pathlib import Path


def read_bodies(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    bodies, at = [], 0
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        bodies.append(data[at + 4:at + 4 + length])
        at += 4 + length
    return bodies


def write_bodies(path: Path, bodies: list[bytes]) -> None:
    Path(path).write_bytes(b"".join(struct.pack(">I", len(body)) + body for body in bodies))


def percentiles_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    if len(seconds) == 1:
        return {f"p{p}_ms": round(seconds[0] * 1000, 2) for p in (50, 95, 99)} | {"max_ms": round(seconds[0] * 1000, 2)}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 2), "p95_ms": round(cuts[94] * 1000, 2),
            "p99_ms": round(cuts[98] * 1000, 2), "max_ms": round(max(seconds) * 1000, 2)}


class Connection:
    def __init__(self, spec: dict) -> None:
        self.context = ssl.create_default_context(cafile=spec["cafile"])
        self.context.load_cert_chain(spec["cert"], spec["key"])
        self.port = spec["port"]
        self.conn: http.client.HTTPSConnection | None = None
        self.connects = 0
        self.workers: dict[str, int] = {}  # answers by X-VGW-Worker (vgw serve --workers N): how load spread

    def post(self, body: bytes) -> int:
        """The status, or 0 when the connection failed (it is reopened for the next request)."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=60)
                self.connects += 1
            self.conn.request("POST", "/v1/vouchers", body=body, headers={"Content-Type": "application/xml"})
            reply = self.conn.getresponse()
            reply.read()
            worker = reply.getheader("X-VGW-Worker", "-")
            self.workers[worker] = self.workers.get(worker, 0) + 1
            if reply.getheader("Connection", "").lower() == "close":
                self.close()
            return reply.status
        except (OSError, http.client.HTTPException):
            self.close()
            return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run(spec: dict) -> dict:
    bodies = read_bodies(spec["bodies"])
    warmup, timed = bodies[:spec.get("warmup", 0)], bodies[spec.get("warmup", 0):]
    concurrency, rate = spec["concurrency"], spec.get("rate")
    connections = [Connection(spec) for _ in range(concurrency)]
    for index, body in enumerate(warmup):  # opens every connection and warms the gateway's caches
        connections[index % concurrency].post(body)
    for connection in connections:
        connection.workers.clear()  # count the timed answers only

    lock = threading.Lock()
    next_index = iter(range(len(timed)))
    results: list[tuple[float, float, float, int]] = []  # (due, sent, answered, status)
    start = time.perf_counter() + 0.05
    cpu_start = time.process_time()

    def worker(connection: Connection) -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            due = start + index / rate if rate else None
            now = time.perf_counter()
            if due is not None and due > now:
                time.sleep(due - now)
            sent = time.perf_counter()
            status = connection.post(timed[index])
            answered = time.perf_counter()
            with lock:
                results.append((due if due is not None else sent, sent, answered, status))

    threads = [threading.Thread(target=worker, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu_start
    for connection in connections:
        connection.close()

    first = min(r[1] for r in results)
    last = max(r[2] for r in results)
    by_status: dict[str, int] = {}
    for *_, status in results:
        by_status[str(status)] = by_status.get(str(status), 0) + 1
    wall = last - first
    summary = {
        "requests": len(results), "concurrency": concurrency, "rate": rate, "wall_s": round(wall, 3),
        "by_status": by_status, "accepted_per_s": round(by_status.get("202", 0) / wall, 1),
        "answered_per_s": round(len(results) / wall, 1),
        "connections_opened": sum(c.connects for c in connections),
        "answers_by_worker": dict(sorted(sum((Counter(c.workers) for c in connections), Counter()).items())),
        # the client shares the machine's cores with the gateway: what it takes is not the gateway's to use
        "client_cpu_ms_per_request": round(cpu * 1000 / len(results), 2),
        "latency": percentiles_ms([r[2] - r[0] for r in results]),
    }
    if rate:
        summary["service_latency"] = percentiles_ms([r[2] - r[1] for r in results])
    return summary


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))), flush=True)
