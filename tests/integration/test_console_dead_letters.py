"""The dead-letter queue of the bank exchange on a real RabbitMQ (adapters/console/dead_letters.py): a message
the reports queue rejected is seen with its x-death reason without being taken, and a replay puts it back in
the queue it died from and only then takes it from the dead-letter queue (a failure in between leaves it in
both: at least once, never lost). A replay of a message that is not there, or of another body, changes
nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid

import pika
import pytest

from adapters.bank.transport import BankTopology
from adapters.console.dead_letters import DeadLetters
from gateway.errors import Refusal
from simulators.bench.transport import delete_topology

from .private_rabbitmq import PrivateRabbitMQ


@pytest.fixture
def broker():
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: run under scripts/with-test-services (make test)", pytrace=False)
    parameters = pika.URLParameters(url)
    topology = BankTopology().prefixed(f"c{uuid.uuid4().hex[:8]}.")
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()
    channel.exchange_declare(topology.dead_letter_exchange, "fanout", durable=True)
    channel.queue_declare(topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange)
    channel.exchange_declare(topology.exchange, "direct", durable=True)
    for routing, queue in topology.bindings.items():
        channel.queue_declare(queue, durable=True, arguments=topology.queue_arguments())
        channel.queue_bind(queue, topology.exchange, routing_key=routing)
    yield parameters, topology, channel
    connection.close()
    delete_topology(parameters, topology)


def dead_letter(channel, topology: BankTopology, message_id: str, body: bytes) -> None:
    """Publish to the reports queue and reject it there, as the bank worker does with a report it cannot use."""
    channel.basic_publish(topology.exchange, topology.reports_routing, body,
                          pika.BasicProperties(message_id=message_id, headers={"kind": "camt.054"}, delivery_mode=2))
    deadline = time.monotonic() + 30
    while True:
        method, _, _ = channel.basic_get(topology.reports_queue, auto_ack=False)
        if method is not None:
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        assert time.monotonic() < deadline, "the published message never reached the reports queue"
        time.sleep(0.05)  # polling the broker, with a deadline


def letters_until(dead: DeadLetters, count: int) -> list:
    deadline = time.monotonic() + 30
    while len(letters := dead.peek()) != count:
        assert time.monotonic() < deadline, f"expected {count} dead letters, found {len(letters)}"
        time.sleep(0.05)  # dead-lettering is asynchronous in the broker; polled with a deadline
    return letters


def queued(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def test_a_dead_letter_is_shown_and_replayed_to_its_queue_at_least_once(broker):
    parameters, topology, channel = broker
    dead = DeadLetters(parameters, topology)
    dead_letter(channel, topology, "RPT-1", b"<Document>not a report</Document>")
    [letter] = letters_until(dead, 1)
    assert (letter.message_id, letter.died_in, letter.reason, letter.deaths) == (
        "RPT-1", topology.reports_queue, "rejected", 1)
    assert letter.headers["kind"] == "camt.054" and letter.preview == "<Document>not a report</Document>"
    assert len(dead.peek()) == 1  # looking took nothing

    with pytest.raises(Refusal) as refused:
        dead.replay("RPT-1", "0" * 64, record=lambda letter: None)
    assert refused.value.code == "not-found" and len(dead.peek()) == 1 and queued(channel, topology.reports_queue) == 0

    def crash(letter):
        raise RuntimeError("the audit write failed")

    with pytest.raises(RuntimeError):
        dead.replay("RPT-1", letter.sha256, record=crash)
    assert len(letters_until(dead, 1)) == 1 and queued(channel, topology.reports_queue) == 1  # in both: not lost
    channel.queue_purge(topology.reports_queue)

    recorded = []
    replayed = dead.replay("RPT-1", letter.sha256, record=recorded.append)
    assert recorded == [replayed] and replayed.died_in == topology.reports_queue
    assert letters_until(dead, 0) == []
    method, properties, body = channel.basic_get(topology.reports_queue, auto_ack=True)
    assert method is not None and body == b"<Document>not a report</Document>"
    assert properties.message_id == "RPT-1" and properties.headers["kind"] == "camt.054"
    with pytest.raises(Refusal):
        dead.replay("RPT-1", letter.sha256, record=recorded.append)  # already replayed
    assert len(recorded) == 1


def test_a_message_that_died_nowhere_known_is_not_replayed(broker):
    parameters, topology, channel = broker
    channel.basic_publish(topology.dead_letter_exchange, "", b"stray", pika.BasicProperties(message_id="STRAY"))
    dead = DeadLetters(parameters, topology)
    [letter] = letters_until(dead, 1)
    assert letter.died_in is None
    with pytest.raises(Refusal) as refused:
        dead.replay("STRAY", letter.sha256, record=lambda letter: None)
    assert refused.value.code == "replay-refused" and len(dead.peek()) == 1


def test_a_replay_stops_at_the_letter_named_and_never_takes_those_after_it(broker):
    parameters, topology, channel = broker
    bodies = {f"RPT-{n}": f"<Document>{n}</Document>".encode() for n in range(3)}
    for message_id, body in bodies.items():
        dead_letter(channel, topology, message_id, body)
    deadline = time.monotonic() + 30
    while queued(channel, topology.dead_letter_queue) != 3:  # not peek(): that would take every one
        assert time.monotonic() < deadline, "the rejected messages never reached the dead-letter queue"
        time.sleep(0.05)  # dead-lettering is asynchronous in the broker; polled with a deadline
    DeadLetters(parameters, topology).replay("RPT-1", hashlib.sha256(bodies["RPT-1"]).hexdigest(), lambda _: None)
    seen = []
    for _ in range(2):
        method, properties, _ = channel.basic_get(topology.dead_letter_queue, auto_ack=True)
        seen.append((properties.message_id, method.redelivered))
    assert seen == [("RPT-0", True), ("RPT-2", False)]  # RPT-2 was never delivered to the replay


def test_a_broker_without_the_dead_letter_queue_is_an_answer_not_a_crash_and_publishes_are_bounded(broker):
    parameters, topology, _ = broker
    dead = DeadLetters(parameters, BankTopology().prefixed(f"none{uuid.uuid4().hex[:8]}."))
    assert dead.parameters.blocked_connection_timeout == 30 and parameters.blocked_connection_timeout is None
    for attempt in (dead.peek, lambda: dead.replay("RPT-1", "0" * 64, lambda _: None)):
        with pytest.raises(Refusal) as refused:
            attempt()
        assert refused.value.code == "broker-unavailable" and "NOT_FOUND" in refused.value.problems[0].message


def test_a_replay_into_a_broker_that_blocks_publishers_gives_up_as_broker_unavailable(tmp_path):
    """A private broker in a memory alarm (watermark 0) blocks every publish: the replay's wait is bounded
    and the letter stays in the dead-letter queue."""
    node = PrivateRabbitMQ(tmp_path)
    try:
        node.start()
        parameters = pika.URLParameters(node.url)
        topology = BankTopology()
        connection = pika.BlockingConnection(parameters)
        channel = connection.channel()
        channel.exchange_declare(topology.dead_letter_exchange, "fanout", durable=True)
        channel.queue_declare(topology.dead_letter_queue, durable=True)
        channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange)
        channel.exchange_declare(topology.exchange, "direct", durable=True)
        for routing, queue in topology.bindings.items():
            channel.queue_declare(queue, durable=True, arguments=topology.queue_arguments())
            channel.queue_bind(queue, topology.exchange, routing_key=routing)
        dead_letter(channel, topology, "RPT-B", b"<Document>blocked</Document>")
        dead = DeadLetters(parameters, topology)
        [letter] = letters_until(dead, 1)
        ctl = ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-q", "set_vm_memory_high_watermark"]
        subprocess.run([*ctl, "0"], env=node.env, check=True, timeout=60, capture_output=True)
        dead.parameters.blocked_connection_timeout = 2  # the shipped 30 s, shortened for the test
        started = time.monotonic()
        with pytest.raises(Refusal) as refused:
            dead.replay("RPT-B", letter.sha256, record=lambda _: pytest.fail("recorded a replay never confirmed"))
        assert refused.value.code == "broker-unavailable" and time.monotonic() - started < 20
        subprocess.run([*ctl, "0.4"], env=node.env, check=True, timeout=60, capture_output=True)
        assert [d.message_id for d in letters_until(dead, 1)] == ["RPT-B"]
        connection.close()
    finally:
        node.close()
