"""The AMQP intake against a real RabbitMQ: receipts, refusals, dead-lettering, stop and restart.

RabbitMQ comes from VGW_TEST_AMQP_URL (``scripts/with-test-services`` sets it). Without it these tests fail,
on purpose: an AMQP intake tested against no broker proves nothing. Each test declares its own exchange and
queues (unique names) and deletes them afterwards, so tests cannot see each other's messages.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest
from twisted.logger import globalLogPublisher

from adapters.amqp.intake import AmqpIntake, AmqpTopology
from adapters.serve.bootstrap import PlatformConfig, build_platform
from adapters.services.intake import IntakeService
from adapters.storage.factory import open_store
from gateway.intake.receipts import verify_receipt
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, AGENCY_B, NOW

USER = "guest"  # the broker user the tests connect as; mapped to AGENCY_A unless a test says otherwise
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def amqp_parameters() -> pika.URLParameters:
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: the AMQP intake tests need a real RabbitMQ. Run them under "
                    "scripts/with-test-services (make test), or export VGW_TEST_AMQP_URL.", pytrace=False)
    return pika.URLParameters(url)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("amqp-pki")
    init_pki(directory, agencies=2, now=NOW)
    return directory


@pytest.fixture
def service(pki_dir, tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    service = IntakeService(
        platform=build_platform(PlatformConfig.from_pki_dir(pki_dir)), banks=BankDirectory.shipped(),
        store=store, gateway_key=load_key(pki_dir / "gateway/key.pem"),
        gateway_cert=load_cert(pki_dir / "gateway/cert.pem"))
    yield service
    store.close()


@pytest.fixture
def topology(amqp_parameters):
    suffix = uuid.uuid4().hex[:8]
    names = AmqpTopology(exchange=f"test.vouchers.{suffix}", queue=f"test.intake.{suffix}",
                         dead_letter=f"test.intake.dead.{suffix}")
    yield names
    connection = pika.BlockingConnection(amqp_parameters)
    channel = connection.channel()
    for queue in (names.queue, names.dead_letter):
        channel.queue_delete(queue)
    for exchange in (names.exchange, names.dead_letter):
        channel.exchange_delete(exchange)
    connection.close()


@pytest.fixture
def intake(service, amqp_parameters, topology):
    """start(agencies=None) -> a started AmqpIntake (USER -> AGENCY_A by default); all stopped at the end."""
    started = []

    def start(agencies=None, service=service) -> AmqpIntake:
        consumer = AmqpIntake(service, amqp_parameters, agencies={USER: AGENCY_A} if agencies is None else agencies,
                              topology=topology, prefetch=4, max_body=MAX_BODY)
        consumer.start()
        started.append(consumer)
        return consumer
    yield start
    for consumer in started:
        consumer.stop()


class Agency:
    """An agency's system: publishes with confirms to the intake exchange, reads its exclusive reply queue."""

    def __init__(self, parameters: pika.URLParameters, topology: AmqpTopology) -> None:
        self.topology = topology
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.reply_queue = self.channel.queue_declare("", exclusive=True).method.queue

    def send(self, body: bytes, correlation_id: str | None = None, *, user_id: str | None = USER,
             reply_to: str | None = "") -> str:
        correlation_id = correlation_id or uuid.uuid4().hex
        properties = pika.BasicProperties(content_type="application/xml", correlation_id=correlation_id,
                                          user_id=user_id, delivery_mode=pika.DeliveryMode.Persistent,
                                          reply_to=self.reply_queue if reply_to == "" else reply_to)
        self.channel.basic_publish(self.topology.exchange, self.topology.routing_key, body, properties,
                                   mandatory=True)
        return correlation_id

    def replies(self, count: int, timeout: float = 20.0) -> list[tuple[pika.BasicProperties, bytes]]:
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(self.reply_queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.02)  # keeps the connection serviced while waiting
                continue
            got.append((properties, body))
        assert len(got) == count, f"expected {count} replies within {timeout} s, got {len(got)}"
        return got

    def ask(self, body: bytes, **kw) -> tuple[pika.BasicProperties, bytes]:
        correlation_id = self.send(body, **kw)
        [(properties, reply)] = self.replies(1)
        assert properties.correlation_id == correlation_id
        return properties, reply

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def agency(amqp_parameters, topology, intake):
    """An agency's system; it asks for ``intake`` because the consumer declares the exchange it publishes to."""
    client = Agency(amqp_parameters, topology)
    yield client
    client.close()


_numbers = itertools.count(1)


def signed_voucher(pki_dir: Path, factory, agency: str = AGENCY_A):
    voucher = factory.voucher(agency, today=NOW.date(), voucher_number=f"AQ{next(_numbers):06d}")
    person = pki_dir / "agencies" / agency / "people" / "preparer"
    return voucher, sign_document(voucher_to_xml(voucher), load_key(person / "key.pem"),
                                  load_cert(person / "cert.pem"), NOW)


def problem_code(properties: pika.BasicProperties, body: bytes) -> str:
    assert properties.content_type == "application/problem+json"
    document = json.loads(body)
    assert document["status"] == properties.headers["status"]
    return document["code"]


def stored(service) -> list[str]:
    """``VOUCHER_ID#REVISION`` of every intake row of either agency (each with its one audit entry)."""
    records = [record for agency in (AGENCY_A, AGENCY_B)
               for record in service.store.list_for_agency(agency, limit=100)[0]]
    assert len(service.store.audit_entries()) == len(records)
    return [record.subject for record in records]


def queue_depth(parameters, queue: str) -> int:
    connection = pika.BlockingConnection(parameters)
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


# --- tests --------------------------------------------------------------------------------------------------


def test_a_good_voucher_gets_a_signed_receipt_and_the_same_bytes_the_same_receipt(intake, agency, service,
                                                                                   pki_dir, factory):
    intake()
    voucher, data = signed_voucher(pki_dir, factory)
    properties, receipt = agency.ask(data)
    assert properties.headers["status"] == 202 and properties.content_type == "application/xml", receipt
    read = verify_receipt(receipt, gateway_cert=load_cert(pki_dir / "gateway/cert.pem"), now=NOW)
    assert (read.voucher_id, read.revision, read.agency) == (voucher.voucher_id, voucher.revision, AGENCY_A)
    again, same = agency.ask(data)
    assert again.headers["status"] == 200 and same == receipt
    assert stored(service) == [f"{voucher.voucher_id}#{voucher.revision}"]


def test_each_message_is_logged_on_one_structured_line(intake, agency, pki_dir, factory):
    events = []
    observer = lambda event: events.append(event) if event.get("event") == "amqp.message" else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        intake()
        voucher, data = signed_voucher(pki_dir, factory)
        agency.ask(data, correlation_id="logged")
        agency.ask(b"junk", correlation_id="junk")
        deadline = time.monotonic() + 20
        while len(events) < 2 and time.monotonic() < deadline:  # the line follows the reply and the ack
            time.sleep(0.01)
    finally:
        globalLogPublisher.removeObserver(observer)
    seen = [(e["correlation_id"], e["agency"], e["status"], e["voucher_id"], e["outcome"]) for e in events]
    assert seen == [("logged", AGENCY_A, 202, voucher.voucher_id, "accepted"),
                    ("junk", AGENCY_A, 422, None, "xml-malformed")]


def test_refusals_are_problem_documents_and_store_nothing(intake, agency, service, pki_dir, factory):
    intake()
    _, good = signed_voucher(pki_dir, factory)
    _, theirs = signed_voucher(pki_dir, factory, agency=AGENCY_B)
    cases = [
        (b"not xml at all", {}, 422, "xml-malformed"),
        (good, {"user_id": None}, 403, "agency-unknown"),
        (theirs, {}, 403, "agency-mismatch"),
        (b"<" + b"x" * MAX_BODY + b"/>", {}, 413, "too-large"),
    ]
    for body, kw, status, code in cases:
        properties, reply = agency.ask(body, **kw)
        assert (properties.headers["status"], problem_code(properties, reply)) == (status, code), reply
    assert stored(service) == []


def test_a_broker_user_without_an_agency_is_refused(intake, agency, service, pki_dir, factory):
    intake(agencies={"someone-else": AGENCY_A})
    _, data = signed_voucher(pki_dir, factory)
    properties, reply = agency.ask(data)
    assert problem_code(properties, reply) == "agency-unknown"
    assert stored(service) == []


def test_a_user_mapped_to_an_agency_the_registry_does_not_know_is_refused(intake, agency, service, pki_dir,
                                                                          factory):
    intake(agencies={USER: "999999999Z"})
    _, data = signed_voucher(pki_dir, factory)
    properties, reply = agency.ask(data)
    assert problem_code(properties, reply) == "agency-unknown"
    assert stored(service) == []


def test_the_broker_refuses_a_forged_user_id(intake, agency, amqp_parameters, topology, pki_dir, factory):
    """The identity rests on this: RabbitMQ closes the channel of a publisher claiming another user."""
    intake()
    _, data = signed_voucher(pki_dir, factory)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        agency.send(data, user_id="agency-b-user")
    assert refused.value.reply_code == 406
    assert queue_depth(amqp_parameters, topology.queue) == 0


def test_a_message_without_reply_to_is_dead_lettered(intake, agency, service, amqp_parameters, topology,
                                                     pki_dir, factory):
    intake()
    _, data = signed_voucher(pki_dir, factory)
    agency.send(data, correlation_id="no-reply", reply_to=None)
    connection = pika.BlockingConnection(amqp_parameters)
    channel = connection.channel()
    deadline = time.monotonic() + 30
    method = None
    while method is None and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(topology.dead_letter, auto_ack=True)
        connection.sleep(0.02)
    connection.close()
    assert method is not None, "nothing reached the dead-letter queue"
    assert body == data and properties.correlation_id == "no-reply"
    assert properties.headers["x-first-death-reason"] == "rejected"
    assert stored(service) == []


def test_an_internal_error_answers_internal_error_and_dead_letters(intake, agency, amqp_parameters, topology):
    class Broken:
        def submit_voucher_as(self, agency, body):
            raise RuntimeError("the store is on fire")

    intake(service=Broken())
    properties, reply = agency.ask(b"<anything/>", correlation_id="boom")
    assert properties.headers["status"] == 500 and problem_code(properties, reply) == "internal-error"
    assert b"fire" not in reply
    deadline = time.monotonic() + 30
    while queue_depth(amqp_parameters, topology.dead_letter) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue_depth(amqp_parameters, topology.dead_letter) == 1


def test_an_unroutable_reply_does_not_hold_back_an_accepted_voucher(intake, agency, service, amqp_parameters,
                                                                    topology, pki_dir, factory):
    intake()
    voucher, data = signed_voucher(pki_dir, factory)
    agency.send(data, reply_to=f"no-such-queue-{uuid.uuid4().hex}")
    deadline = time.monotonic() + 30
    while not stored(service) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(service) == [f"{voucher.voucher_id}#{voucher.revision}"]
    properties, receipt = agency.ask(data)  # asking again: the original receipt
    assert properties.headers["status"] == 200
    assert verify_receipt(receipt, gateway_cert=load_cert(pki_dir / "gateway/cert.pem"), now=NOW).voucher_id == \
        voucher.voucher_id
    assert queue_depth(amqp_parameters, topology.queue) == 0
    assert queue_depth(amqp_parameters, topology.dead_letter) == 0


def test_stopping_and_restarting_mid_stream_loses_and_repeats_nothing(intake, agency, service, amqp_parameters,
                                                                      topology, pki_dir, factory):
    vouchers = [signed_voucher(pki_dir, factory) for _ in range(20)]

    class HeldAfterThree:
        """The service, but the first consumer's fourth voucher waits until that consumer is told to stop: the
        stop then comes mid-stream however fast the machine handles the rest."""

        def __init__(self) -> None:
            self.calls = 0

        def submit_voucher_as(self, agency_code, body):
            self.calls += 1
            if self.calls > 3 and not first._stopping.is_set():
                first._stopping.wait(30)  # the consumer's own stop signal (adapters/amqp/thread.py)
            return service.submit_voucher_as(agency_code, body)

    first = intake(service=HeldAfterThree())
    sent = {agency.send(data, correlation_id=f"c{i:02d}"): voucher for i, (voucher, data) in enumerate(vouchers)}
    early = agency.replies(3)
    first.stop()
    assert queue_depth(amqp_parameters, topology.queue) > 0, "the consumer drained everything before the stop"
    second = intake()
    rest = agency.replies(20 - len(early))
    replies = early + rest
    answered = [properties.correlation_id for properties, _ in replies]
    assert sorted(answered) == sorted(sent), "each request answered exactly once"
    assert {properties.headers["status"] for properties, _ in replies} == {202}
    assert sorted(stored(service)) == sorted(f"{v.voucher_id}#{v.revision}" for v in sent.values())
    # stop() returns once in-flight work is done, and every reply is confirmed by the broker before its
    # request is acked: after it, any second answer to a request would already sit in the reply queue.
    second.stop()
    assert agency.channel.basic_get(agency.reply_queue, auto_ack=True)[0] is None, "a request answered twice"
    assert queue_depth(amqp_parameters, topology.queue) == 0


def test_declaring_is_idempotent_and_the_queue_is_a_quorum_queue(intake, amqp_parameters, topology):
    intake().stop()
    intake()  # the same declarations again, while the queue exists
    connection = pika.BlockingConnection(amqp_parameters)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        connection.channel().queue_declare(topology.queue, durable=True,
                                           arguments={**topology.queue_arguments(), "x-queue-type": "classic"})
    connection.close()
    assert refused.value.reply_code == 406 and "x-queue-type" in refused.value.reply_text
