"""`vgw serve --amqp` across a broker restart: it reconnects, loses and doubles nothing, says so in /readyz
and /metrics, and still shuts down promptly while the broker is away.

The broker is the test's own (:mod:`.private_rabbitmq`): stopping the shared one would break every other
test. One scenario in order, because each step needs the state the previous left and a broker boot takes
7-10 s. The gateway answers into a durable reply queue, so replies outlive the restart like the requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.amqp.intake import AmqpTopology
from adapters.storage.factory import open_store
from gateway.intake.receipts import verify_receipt
from simulators.pki.layout import init_pki, load_cert

from ..conftest import AGENCY_A, NOW
from .private_rabbitmq import PrivateRabbitMQ
from .test_amqp_intake import signed_voucher
from .test_https_intake import VGW, call, https_port, problem, wait_until_ready

USER = "guest"
REPLIES = "test.restart.replies"
TOPOLOGY = AmqpTopology()  # what vgw serve declares


@pytest.fixture
def broker(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rabbitmq")
    node = PrivateRabbitMQ(directory)
    node.launch()  # it boots while the test makes its PKI and vouchers
    try:
        yield node
    finally:
        node.close()
        shutil.rmtree(directory, ignore_errors=True)


class ServedGateway:
    """A `vgw serve --amqp` process; ``port`` and ``pki_dir`` as :func:`.test_https_intake.call` wants them."""

    def __init__(self, base: Path, amqp_url: str) -> None:
        self.pki_dir, self.log = base / "pki", base / "serve.log"
        self.store_path = base / "store.sqlite3"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [VGW, "serve", "--pki", str(self.pki_dir), "--listen", "127.0.0.1:0", "--store",
                 f"sqlite:///{self.store_path}", "--amqp", amqp_url, "--metrics-listen", "127.0.0.1:0"],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "VGW_AMQP_USERS": f"{USER}={AGENCY_A}"})
        ready = wait_until_ready(self.process, self.log)
        self.port = https_port(ready)
        self.metrics_url = dict(part.split("=", 1) for part in ready.split()[4:])["metrics"]

    def readiness(self) -> tuple[int, str | None]:
        status, _, body = call(self, "GET", "/readyz")
        return status, problem(body)["code"] if status != 200 else None

    def amqp_gauges(self) -> tuple[float | None, float | None]:
        """(vgw_amqp_connected, vgw_amqp_queue_messages) for the intake queue; None where absent."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as reply:
            text = reply.read().decode()
        samples = {(s.name, s.labels.get("queue")): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        assert ("vgw_http_worker_backlog", None) in samples and ("vgw_http_workers_busy", None) in samples
        return (samples.get(("vgw_amqp_connected", TOPOLOGY.queue)),
                samples.get(("vgw_amqp_queue_messages", TOPOLOGY.queue)))

    def events(self, name: str) -> list[dict]:
        """The structured log lines (Twisted's JSON, one per line after a record separator) of one event."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            line = line.lstrip("\x1e")
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def publish(url: str, body: bytes) -> str:
    """Publish as an agency does (confirmed, persistent, answering to the durable REPLIES); the correlation id."""
    correlation_id = uuid.uuid4().hex
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(TOPOLOGY.exchange, TOPOLOGY.routing_key, body, pika.BasicProperties(
            content_type="application/xml", correlation_id=correlation_id, user_id=USER, reply_to=REPLIES,
            delivery_mode=pika.DeliveryMode.Persistent), mandatory=True)
    finally:
        connection.close()
    return correlation_id


class Replies:
    """Everything the gateway answered into REPLIES, by correlation id, in order of arrival."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[tuple[int, bytes]]] = {}

    def wait_for(self, url: str, correlation_id: str, timeout: float = 30.0) -> tuple[int, bytes]:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = connection.channel()
            deadline = time.monotonic() + timeout
            while correlation_id not in self.by_id:
                method, properties, body = channel.basic_get(REPLIES, auto_ack=True)
                if method is not None:
                    self.by_id.setdefault(properties.correlation_id, []).append((properties.headers["status"], body))
                elif time.monotonic() > deadline:
                    raise AssertionError(f"no reply to {correlation_id} within {timeout} s")
                else:
                    connection.sleep(0.02)
        finally:
            connection.close()
        return self.by_id[correlation_id][0]


def queue_depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


@contextlib.contextmanager
def store_write_lock(path: Path):
    """SQLite's one write lock, taken as the gateway's own writes take it (BEGIN IMMEDIATE). While the test
    holds it the gateway can verify a voucher but not store it, hence neither reply nor acknowledge."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def test_the_amqp_intake_survives_a_broker_restart_and_stops_promptly_while_the_broker_is_down(
        broker, tmp_path, factory):
    init_pki(tmp_path / "pki", agencies=2, now=NOW)
    (first, first_data), (held, held_data), (later, later_data) = (
        signed_voucher(tmp_path / "pki", factory) for _ in range(3))
    gateway_cert = load_cert(tmp_path / "pki/gateway/cert.pem")
    broker.wait_until_ready()
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    connection.channel().queue_declare(REPLIES, durable=True)
    connection.close()
    gateway = ServedGateway(tmp_path, broker.url)
    replies = Replies()
    try:
        # Before: a receipt; ready; connected, nothing waiting.
        status, receipt = replies.wait_for(broker.url, publish(broker.url, first_data))
        assert status == 202 and verify_receipt(receipt, gateway_cert=gateway_cert, now=NOW).voucher_id == \
            first.voucher_id
        assert gateway.readiness() == (200, None)
        wait_until(lambda: gateway.amqp_gauges() == (1.0, 0.0), "connected with an empty queue in /metrics")

        # A voucher in the gateway's hands when the broker goes: delivered (the queue is empty again), but
        # not stored, answered or acked before the broker has stopped. Then it is stored, and its reply
        # fails with the connection.
        with store_write_lock(gateway.store_path):
            held_id = publish(broker.url, held_data)
            wait_until(lambda: queue_depth(broker.url, TOPOLOGY.queue) == 0, "the voucher to be delivered")
            broker.stop()  # SIGTERM, and wait until it has exited

        # While the broker is down: not ready, disconnected, depth unknown.
        wait_until(lambda: gateway.readiness() == (503, "not-ready"), "/readyz to answer 503 not-ready")
        assert gateway.amqp_gauges() == (0.0, None)

        broker.start()
        wait_until(lambda: gateway.readiness() == (200, None), "/readyz to answer 200 after the restart", 30)
        assert gateway.amqp_gauges()[0] == 1.0

        # After: a new voucher gets its receipt; the held one was answered once, from the store.
        status, receipt = replies.wait_for(broker.url, publish(broker.url, later_data))
        assert status == 202 and verify_receipt(receipt, gateway_cert=gateway_cert, now=NOW).voucher_id == \
            later.voucher_id
        status, receipt = replies.wait_for(broker.url, held_id)
        assert replies.by_id[held_id] == [(200, receipt)], "the held voucher answered once, as a duplicate"
        store = open_store(f"sqlite:///{gateway.store_path}")
        try:
            [stored] = store.revisions(held.voucher_id)
            assert stored.receipt_xml == receipt
            records = store.list_for_agency(AGENCY_A, limit=100)[0]
            assert sorted(r.voucher_id for r in records) == sorted(v.voucher_id for v in (first, held, later))
            assert len(store.audit_entries()) == 3
        finally:
            store.close()
        handled = [(e["outcome"], e["status"], e["redelivered"]) for e in gateway.events("amqp.message")
                   if e["correlation_id"] == held_id]
        assert handled == [("accepted+reply-failed", 202, False), ("duplicate", 200, True)]

        attempts = gateway.events("amqp.reconnect")
        assert [e["attempt"] for e in attempts] == list(range(1, len(attempts) + 1))
        assert {e["outcome"] for e in attempts[:-1]} == {"failed"} and attempts[-1]["outcome"] == "connected"
        assert all(0 < e["waited_s"] <= 5.0 for e in attempts)

        # Shutting down while the broker is away: the consumer is between reconnect attempts and leaves.
        broker.stop()
        wait_until(lambda: gateway.readiness() == (503, "not-ready"), "/readyz to answer 503 again")
        gateway.process.terminate()
        assert gateway.process.wait(timeout=60) == 0
    finally:
        gateway.kill()
