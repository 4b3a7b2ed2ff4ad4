"""The load side of ``vgw bench approvals``: an agency's systems posting vouchers, then the signed actions of
each approval stage, over keep-alive mTLS connections.

Runs as its own process (``python -m simulators.bench.approvals_load_client SPEC.json``) so its CPU time is not
taken from the gateway's interpreter, only from the machine. The spec names the gateway's port, the TLS
files, the number of connections and the phases in order (``vouchers``, then one per stage); each phase has
a bodies file (:func:`simulators.bench.intake_load_client.write_bodies`), the path to post each body to, and how
many of its first requests are a warm-up.

A phase starts only when the previous one is wholly answered: an action can be accepted only after the
previous stage's. Within a phase the warm-up requests go one at a time, connection after connection (they
open every connection and warm the caches for that stage's signer), then the rest concurrently, one request
in flight per connection. Prints one JSON line: per phase the count by status, the timed wall time,
accepted/s and latency percentiles, a sample of unexpected answers; and the same over the phases in
``total_of``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from simulators.bench.intake_load_client import percentiles_ms, read_bodies
from simulators.mtls_load import Connection, Outcome, by_status, post_concurrently, post_in_turn, wall_seconds

ERROR_SAMPLES = 5


def _unexpected(outcomes: list[Outcome], paths: list[str], offset: int, expect: int) -> list[dict]:
    return [{"index": offset + o.index, "path": paths[offset + o.index], "status": o.status,
             "answer": o.answer[:300].decode("utf-8", "replace")}
            for o in outcomes if o.status != expect][:ERROR_SAMPLES]


def run_phase(connections: list[Connection], phase: dict, expect: int = 202) -> tuple[dict, list[Outcome]]:
    bodies = read_bodies(Path(phase["bodies"]))
    paths = phase["paths"]
    if len(paths) != len(bodies):
        raise ValueError(f"phase {phase['name']}: {len(bodies)} bodies but {len(paths)} paths")
    warmup = phase.get("warmup", 0)
    requests = list(zip(paths, bodies))
    warm = post_in_turn(connections, requests[:warmup], expect)
    timed = post_concurrently(connections, requests[warmup:], expect)
    wall = wall_seconds(timed)
    counts = by_status(timed)
    summary = {
        "requests": len(timed), "warmup": warmup, "wall_s": round(wall, 3), "by_status": counts,
        "warmup_by_status": by_status(warm),
        "accepted_per_s": round(counts.get(str(expect), 0) / wall, 1) if wall else 0.0,
        "latency": percentiles_ms([o.seconds for o in timed]),
        "unexpected": _unexpected(warm, paths, 0, expect) + _unexpected(timed, paths, warmup, expect),
    }
    return summary, timed


def run(spec: dict) -> dict:
    connections = [Connection(port=spec["port"], cafile=spec["cafile"], cert=spec["cert"], key=spec["key"])
                   for _ in range(spec["connections"])]
    cpu_start = time.process_time()
    phases, timed_of = {}, {}
    try:
        for phase in spec["phases"]:
            phases[phase["name"]], timed_of[phase["name"]] = run_phase(connections, phase)
    finally:
        for connection in connections:
            connection.close()
    cpu = time.process_time() - cpu_start
    total_of = spec.get("total_of", [])
    outcomes = [o for name in total_of for o in timed_of[name]]
    accepted = sum(phases[name]["by_status"].get("202", 0) for name in total_of)
    # the sum of the phases' walls: between two phases the gateway waits for the next phase's warm-up
    wall = sum(phases[name]["wall_s"] for name in total_of)
    requests = sum(len(timed_of[name]) + phases[name]["warmup"] for name in phases)
    return {
        "connections": len(connections), "connections_opened": sum(c.connects for c in connections),
        "phases": phases,
        "total": {"phases": total_of, "requests": len(outcomes), "accepted": accepted, "wall_s": round(wall, 3),
                  "accepted_per_s": round(accepted / wall, 1) if wall else 0.0,
                  "latency": percentiles_ms([o.seconds for o in outcomes])},
        # the client shares the machine's cores with the gateway: what it takes is not the gateway's to use
        "client_cpu_ms_per_request": round(cpu * 1000 / requests, 2) if requests else 0.0,
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))), flush=True)
