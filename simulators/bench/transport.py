"""How fast the bank transport publishes with confirms: pipelined (the window's default) against one at a time.

``measure_publish`` runs in the reactor (it returns a Deferred); ``python -m simulators.bench.transport --amqp
URL`` runs both measurements against a broker on a throw-away topology (deleted afterwards) and prints JSON.
Waiting for each confirm before the next publish (a window of one) is what the ``BlockingConnection``
publishers do; the comparison is the point of the pipelined transport.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from twisted.internet import defer

from adapters.bank.transport import BankTopology, TransportError, settle_all


def measure_publish(transport, n: int = 20000, size: int = 1024, *, routing: str | None = None) -> defer.Deferred:
    """Publish ``n`` messages of ``size`` bytes at once to ``routing`` (default: the topology's transfers key)
    and wait for every confirm. A Deferred firing with a dict: messages, size, confirmed, failed, seconds
    (first publish to last confirm), msgs_per_s (confirmed per second), mib_per_s and max_in_flight."""
    routing = routing or transport.topology.transfers_routing
    body = bytes(size)
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    publishes = [transport.publish(f"bench-{run}-{i}", routing, body, {}) for i in range(n)]

    def measured(results):
        seconds = time.perf_counter() - started
        confirmed = sum(1 for ok, _ in results if ok)
        failures = [f for ok, f in results if not ok]
        for failure in failures:
            failure.trap(TransportError)
        return {"messages": n, "size": size, "confirmed": confirmed, "failed": len(failures),
                "seconds": round(seconds, 3), "msgs_per_s": round(confirmed / seconds, 1),
                "mib_per_s": round(confirmed * size / seconds / 2**20, 2),
                "max_in_flight": transport.stats.max_in_flight}

    return settle_all(publishes).addCallback(measured)


def delete_topology(parameters, topology: BankTopology) -> None:
    """Delete the queues and exchanges of ``topology`` (blocking; for throw-away topologies)."""
    import pika

    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        for queue in topology.queues:
            channel.queue_delete(queue)
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            channel.exchange_delete(exchange)
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> None:
    import pika
    from twisted.internet import task, threads

    from adapters.bank.amqp_transport import AmqpBankTransport

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp", required=True, help="broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%%2F")
    parser.add_argument("-n", type=int, default=20000, help="messages to publish pipelined")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--serial", type=int, default=2000, help="messages to publish one at a time (0: skip)")
    args = parser.parse_args(argv)
    parameters = pika.URLParameters(args.amqp)
    topology = BankTopology().prefixed(f"bench.{uuid.uuid4().hex[:8]}.")

    @defer.inlineCallbacks
    def run(reactor):
        report = {}
        try:
            for name, count, window in (("pipelined", args.n, None), ("one-at-a-time", args.serial, 1)):
                if not count:
                    continue
                extra = {"window_messages": window} if window else {}
                transport = AmqpBankTransport(parameters, topology, reactor=reactor, **extra)
                yield transport.start()
                try:
                    report[name] = yield measure_publish(transport, count, args.size)
                finally:
                    yield transport.stop()
        finally:
            yield threads.deferToThread(delete_topology, parameters, topology)
        print(json.dumps(report, indent=2))

    task.react(run)


if __name__ == "__main__":
    main()
